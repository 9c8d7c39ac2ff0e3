"""The `openai` agent: any OpenAI-compatible chat-completions endpoint as an arena `Policy`.

Spec: `openai:MODEL@URL[:KEY=VALUE]...`, e.g. `openai:tiny@http://127.0.0.1:8000/v1` or
`openai:Qwen/Qwen2.5-0.5B-Instruct@http://gpu-box:8000/v1:constrain=yes:temperature=0.7`.
A URL without a path gets `/v1` (where `vllm serve` answers); without `@URL`,
`OPENAI_BASE_URL` is used. The key is `OPENAI_API_KEY` (default a dummy: vLLM accepts
any unless started with `--api-key`). Options: constrain, temperature, top_p,
max_tokens, concurrency, timeout, retries, name (see `OpenAIPolicy`).

**Prompts**: a `Request` already carries its chat messages (the role's system prompt and
the observation, built by the env); the server applies the model's chat template, as
`HFPolicy.encode` does locally, so both agents see the same prompt.

**Batching**: `act(requests)` sends every request at once (asyncio and the client's
`AsyncOpenAI`, at most `concurrency` in flight) and returns the answers in request order.
A server such as vLLM batches concurrent requests itself.

**Failures**: the official client retries 408/409/429/5xx answers, timeouts and connection
errors `retries` times with exponential backoff and jitter (0.5 s doubling, at most 8 s,
minus up to 25%), and honours `Retry-After` / `retry-after-ms` up to two minutes. Each try
has `timeout` seconds. Whatever still fails becomes a one-line `ArenaError` naming the fix,
and the other requests of the batch are cancelled at once (as is the batch on Ctrl-C). At
construction one `GET /models` (no retries) checks that the server is up and serves MODEL,
so a wrong URL or name fails before any episode is played; a server without `/models`
skips the name check (its 404 on the first request then names the model).

**Legal-action constraint** (`constrain=yes`): a request with `legal_actions` asks for
vLLM's structured output `{"structured_outputs": {"choice": [...]}}` (vLLM 0.32; the older
`guided_choice` field is ignored there, with a warning, so it is not sent). Without the
constraint the text comes back as generated and the env judges it. vLLM's choice is a
grammar over characters: it admits any tokenization of an action (e.g. `[`, `check`, `]`),
where the hf agent's trie admits only the canonical one; the text is the same action.

**Log-probs and token ids**: every request asks for `logprobs`; `Completion.logprobs` holds
one per completion token, as the server reports them (vLLM's default `--logprobs-mode
raw_logprobs`: after the choice grammar's mask, before temperature and top-p; start it with
`processed_logprobs` for the sampling distribution). Token ids need vLLM's
`return_token_ids` (the completion's ids, EOS included, and the prompt's in `prompt_ids`);
a server that refuses that field (HTTP 400 naming it) is asked again without it, and from
then on `token_ids` and `prompt_ids` stay None.

**Sampling as asked**: a vLLM server fills every sampling field a request leaves out from
the model's `generation_config.json` (`--generation-config auto`, its default): a served
Qwen2.5-Instruct samples with `top_k` 20 and `repetition_penalty` 1.05 on top of the
temperature and top-p asked for. Each request therefore also sends the neutral values
(`presence_penalty` and `frequency_penalty` 0, vLLM's `top_k` 0, `min_p` 0 and
`repetition_penalty` 1), as the hf agent puts a model's own extras back to neutral
(`arena.agents.hf.sampling_overrides`) and the vllm agent passes `SamplingParams` whole;
a server that refuses vLLM's fields (HTTP 400 naming one) is asked again without them.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from arena.errors import ArenaError
from arena.policy import Completion, Request

from .hf import check_chat_template_kwargs, check_decoding
from .options import convert_options, peel_options
from .special_tokens import GENERIC, neutralise

DUMMY_KEY = "EMPTY"
#: vLLM's sampling fields a request sends at their neutral values (the module docstring)
NEUTRAL_SAMPLING: dict[str, Any] = {"top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0}
OPTIONS: dict[str, type] = {"constrain": bool, "temperature": float, "top_p": float, "max_tokens": int,
                             "concurrency": int, "timeout": float, "retries": int, "name": str,
                             "enable_thinking": bool}


def _import_openai() -> Any:
    try:
        import openai
    except ImportError:
        raise ArenaError("the openai agent needs the openai package: pip install 'selfplay-arena[openai]'") from None
    return openai


def normalize_url(url: str) -> str:
    """`host:8000` -> `http://host:8000/v1`; a URL with a path is kept (minus a trailing /)."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    if urlsplit(url).path in ("", "/"):
        url += "/v1"
    return url


def parse_spec(spec: str) -> tuple[str, str, dict[str, Any]]:
    """`openai:MODEL@URL[:KEY=VALUE]...` -> (model, url, options). Options are peeled off the
    end (`arena.agents.options`: a URL's `:8000/v1` is not KEY=VALUE), so model names with
    `:` or `/` survive."""
    rest = spec.strip()
    rest, raw = peel_options(rest[len("openai:"):] if rest.startswith("openai:") else "")
    model, sep, url = rest.partition("@")
    if not sep:
        url = os.environ.get("OPENAI_BASE_URL", "")
    if not model.strip() or not url.strip():
        raise ArenaError(f"openai agent {spec!r}: write openai:MODEL@URL, e.g. openai:tiny@http://127.0.0.1:8000/v1 "
                         "(or set OPENAI_BASE_URL)")
    options = convert_options("openai", raw, OPTIONS, "openai:MODEL@URL:constrain=yes:temperature=0.7")
    return model.strip(), normalize_url(url), options


class OpenAIPolicy:
    """A model behind an OpenAI-compatible server answering arena requests (see the module
    docstring).

    Args:
        model: the served model name (`vllm serve PATH --served-model-name NAME`; else PATH).
        base_url: the API root, e.g. `http://127.0.0.1:8000/v1`.
        name: the agent name recorded in episodes (default `openai:MODEL`).
        api_key: default `OPENAI_API_KEY`, else a dummy.
        temperature, top_p: sampling settings, sent with every request.
        max_tokens: completion length cap.
        seed: seeds a stream of per-request seeds (reproducible where the server honours
            `seed`; distinct per request, so equal prompts still sample differently).
        constrain: ask for structured-output choice among `legal_actions` (vLLM).
        concurrency: requests in flight at once.
        timeout: seconds per try of one request.
        retries: extra tries of a failed request (the client's backoff; see above).
        check: probe `GET /models` now (server up, model served).
        enable_thinking: the chat template's switch, sent as `chat_template_kwargs` (vLLM's
            and SGLang's request field; Qwen3's template reads it); None sends nothing.
        chat_template_kwargs: more of the template's arguments, sent the same way
            (`enable_thinking` above overrides its key); a training run's
            `--chat-template-kwargs` reach a served `--opponent` through it.
    """

    def __init__(self, model: str, base_url: str, *, name: str | None = None, api_key: str | None = None,
                 temperature: float = 1.0, top_p: float = 1.0, max_tokens: int = 512, seed: int | None = None,
                 constrain: bool = False, concurrency: int = 32, timeout: float = 120.0, retries: int = 4,
                 check: bool = True, enable_thinking: bool | None = None,
                 chat_template_kwargs: dict[str, Any] | None = None):
        check_decoding(temperature=temperature, top_p=top_p)  # the hf agent's checks, the same lines
        if max_tokens < 1 or concurrency < 1 or timeout <= 0 or retries < 0:
            raise ArenaError("openai agent: max_tokens and concurrency must be >= 1, timeout > 0, retries >= 0")
        openai = _import_openai()
        self.model = model
        self.base_url = normalize_url(base_url)
        self.name = name or f"openai:{model}"
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.max_tokens = int(max_tokens)
        self.constrain = bool(constrain)
        self.concurrency = int(concurrency)
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.chat_template_kwargs = check_chat_template_kwargs(chat_template_kwargs, "chat_template_kwargs")
        if enable_thinking is not None:
            self.chat_template_kwargs["enable_thinking"] = enable_thinking
        self.token_ids = True  # vLLM's return_token_ids; switched off if the server refuses it
        self.neutral = True  # NEUTRAL_SAMPLING sent; switched off if the server refuses those fields
        self._seeds = random.Random(seed) if seed is not None else None
        self._openai = openai
        self._api_key = api_key or os.environ.get("OPENAI_API_KEY") or DUMMY_KEY
        if check:
            self.check()

    def reseed(self, seed: int) -> None:
        """Start the stream of per-request seeds afresh from `seed` (each data-parallel
        process and Ray worker its own: the same seeds would draw the same answers)."""
        self._seeds = random.Random(seed)

    def _new_client(self, asynchronous: bool = False) -> Any:
        kind = self._openai.AsyncOpenAI if asynchronous else self._openai.OpenAI
        return kind(base_url=self.base_url, api_key=self._api_key, timeout=self.timeout, max_retries=self.retries)

    @classmethod
    def from_spec(cls, spec: str, seed: int | None = None, **kwargs: Any) -> OpenAIPolicy:
        """`openai:MODEL@URL[:KEY=VALUE]...` (module docstring); `kwargs` go to the constructor
        (the spec's options win)."""
        model, url, options = parse_spec(spec)
        return cls(model, url, seed=seed, **{**kwargs, **options})

    # --- errors --------------------------------------------------------------------
    def _unreachable(self) -> ArenaError:
        return ArenaError(f"cannot reach an OpenAI-compatible server at {self.base_url}: start one "
                          f"(`vllm serve {self.model}`) or fix --agents openai:{self.model}@URL")

    def _unknown_model(self, served: Sequence[str] = ()) -> ArenaError:
        listed = f" (it serves: {', '.join(served)})" if served else ""
        return ArenaError(f"the server at {self.base_url} does not serve model {self.model!r}{listed}: "
                          f"fix --agents openai:MODEL@{self.base_url} (or `vllm serve PATH --served-model-name {self.model}`)")

    def _explain(self, exc: Exception) -> ArenaError:
        """One line for a request that failed for good."""
        openai = self._openai
        tries = f"{self.retries + 1} tries"
        if isinstance(exc, openai.APITimeoutError):
            return ArenaError(f"no answer from {self.base_url} within {self.timeout:g} s ({tries}): "
                              "raise the timeout (openai:MODEL@URL:timeout=SECONDS) or check the server")
        if isinstance(exc, openai.APIConnectionError):
            return self._unreachable()
        if isinstance(exc, openai.NotFoundError):
            return self._unknown_model()
        if isinstance(exc, openai.AuthenticationError):
            return ArenaError(f"the server at {self.base_url} refused the API key: set OPENAI_API_KEY")
        if isinstance(exc, openai.APIStatusError):
            message = _first_line(exc)
            if exc.status_code == 429 or exc.status_code >= 500:
                return ArenaError(f"the server at {self.base_url} answered {exc.status_code} ({message}) after {tries}: "
                                  "retry later, or raise retries (openai:MODEL@URL:retries=N)")
            fix = ("drop :constrain=yes (this server has no structured-output choice)" if "structured_outputs" in message
                   else "check the agent's options (max_tokens, constrain) against the server's limits")
            return ArenaError(f"the server at {self.base_url} refused the request ({exc.status_code}: {message}): {fix}")
        return ArenaError(f"request to {self.base_url} failed: {type(exc).__name__}: {_first_line(exc)}")

    # --- requests ------------------------------------------------------------------
    def check(self) -> None:
        """One `GET /models` without retries: the server is up and serves `self.model`."""
        openai = self._openai
        try:
            with self._new_client().with_options(max_retries=0, timeout=min(self.timeout, 10.0)) as client:
                served = [m.id for m in client.models.list()]
        except openai.NotFoundError:
            return  # a server without /models: the first request will tell
        except openai.APIConnectionError:
            raise self._unreachable() from None
        except openai.APIStatusError as exc:
            raise self._explain(exc) from None
        if served and self.model not in served:
            raise self._unknown_model(served)

    def body(self, request: Request, seed: int | None = None, token_ids: bool = True,
             neutral: bool = True) -> dict[str, Any]:
        """The keyword arguments of `chat.completions.create` for one request."""
        extra: dict[str, Any] = dict(NEUTRAL_SAMPLING) if neutral else {}
        if self.constrain and request.legal_actions:
            extra["structured_outputs"] = {"choice": list(request.legal_actions)}
        if token_ids:
            extra["return_token_ids"] = True
        if self.chat_template_kwargs:
            extra["chat_template_kwargs"] = dict(self.chat_template_kwargs)
        kwargs: dict[str, Any] = {
            # the server's tokenizer would read a role marker another role wrote as the token
            "model": self.model, "messages": neutralise(request.messages, GENERIC), "temperature": self.temperature,
            "top_p": self.top_p, "max_tokens": self.max_tokens, "logprobs": True, "n": 1,
            "presence_penalty": 0.0, "frequency_penalty": 0.0,
        }
        if seed is not None:
            kwargs["seed"] = seed
        if extra:
            kwargs["extra_body"] = extra
        return kwargs

    async def _complete(self, client: Any, request: Request, seed: int | None) -> Completion:
        ids, neutral = self.token_ids, self.neutral  # read once: another request may switch them off meanwhile
        while True:  # each refusal switches one of vLLM's fields off for good: at most three tries
            try:
                response = await client.chat.completions.create(**self.body(request, seed, ids, neutral))
                return self._completion(response, ids)
            except self._openai.BadRequestError as exc:
                if ids and "return_token_ids" in str(exc):
                    self.token_ids = ids = False  # not vLLM: ask again without the ids
                elif neutral and any(name in str(exc) for name in NEUTRAL_SAMPLING):
                    self.neutral = neutral = False  # nor its sampling fields
                else:
                    raise

    def _completion(self, response: Any, ids: bool) -> Completion:
        choice = response.choices[0]
        content = getattr(choice.logprobs, "content", None) if choice.logprobs is not None else None
        logprobs = [float(t.logprob) for t in content] if content else None
        token_ids = (choice.model_extra or {}).get("token_ids") if ids else None
        prompt_ids = (response.model_extra or {}).get("prompt_token_ids") if ids else None
        info = {"finish_reason": choice.finish_reason} if choice.finish_reason else {}
        return Completion(text=choice.message.content or "", prompt_ids=prompt_ids, token_ids=token_ids,
                          logprobs=logprobs, info=info)

    def act(self, requests: Sequence[Request]) -> list[Completion]:
        """All requests concurrently (at most `concurrency` in flight), answers in order."""
        if not requests:
            return []
        seeds = [self._seeds.randrange(2**31) if self._seeds else None for _ in requests]
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # the usual case: no event loop in this thread
            return self._run(requests, seeds)
        with ThreadPoolExecutor(max_workers=1) as pool:  # called from async code (a notebook): its own loop
            return pool.submit(self._run, requests, seeds).result()

    def _run(self, requests: Sequence[Request], seeds: list[int | None]) -> list[Completion]:
        try:
            return asyncio.run(self._gather(requests, seeds))
        except self._openai.OpenAIError as exc:
            raise self._explain(exc) from None

    async def _gather(self, requests: Sequence[Request], seeds: list[int | None]) -> list[Completion]:
        """One client per call (an async client's connections belong to one event loop). The
        first request that fails for good cancels the others at once, as Ctrl-C does."""
        limit = asyncio.Semaphore(self.concurrency)

        async def one(request: Request, seed: int | None) -> Completion:
            async with limit:
                return await self._complete(client, request, seed)

        async with self._new_client(asynchronous=True) as client:
            tasks = [asyncio.ensure_future(one(r, s)) for r, s in zip(requests, seeds)]
            try:
                return list(await asyncio.gather(*tasks))
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)


def _first_line(exc: Exception) -> str:
    """The server's error message (or the exception's), first line, capped."""
    body = getattr(exc, "body", None)
    message = body.get("message") if isinstance(body, dict) else None
    text = str(message or exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def make_openai_agent(spec: str, seed: int | None = None, **kwargs: Any) -> OpenAIPolicy:
    """`openai:MODEL@URL[:KEY=VALUE]...` as an agent (`arena.agents.make_agent`)."""
    return OpenAIPolicy.from_spec(spec, seed=seed, **kwargs)
