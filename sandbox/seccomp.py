"""A seccomp filter for the bubblewrap backend (Docker applies its own default profile).

`filter_program()` returns a classic-BPF program, in the binary form ``bwrap --seccomp FD``
reads (an array of ``struct sock_filter``), that makes the kernel refuse, with EPERM, the
system calls a program has no business making and that would let it leave state behind
for later jobs, reach into other processes, or widen the kernel surface it can attack:

- System V IPC and POSIX message queues (``shmget``, ``msgget``, ``semget``, ``mq_open``,
  ...): their objects outlive the process that made them, so one job could pass data to
  the next, or pile up shared memory outside its own RLIMIT_AS;
- other processes' memory (``ptrace``, ``process_vm_readv``/``writev``): belt and braces
  on top of the runner being non-dumpable;
- new namespaces and mounts (``unshare``, ``setns``, ``clone`` with ``CLONE_NEW*`` flags,
  ``mount``, the new mount API, ``pivot_root``, ``chroot``); ``clone3`` answers ENOSYS
  (its flags cannot be inspected), so the C library falls back to ``clone``, as Docker does;
- the usual kernel attack surface that Docker's default profile also closes: ``bpf``,
  ``perf_event_open``, ``userfaultfd``, ``io_uring_*``, ``keyctl`` and friends, module and
  kexec loading, clock setting, ``swapon``, ``reboot``, ``acct``, ``open_by_handle_at``,
  NUMA page migration, ``personality``, ``syslog``.

Everything else is allowed. The x32 ABI and 32-bit (``int 0x80``) system calls, which
would bypass the numbers checked here, are refused outright. Only x86-64 is covered: on
another architecture `filter_program()` returns None and the bubblewrap backend runs
without the filter (``arena sandbox doctor`` says so).
"""

from __future__ import annotations

import errno
import platform
import struct

AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000

# x86-64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl)
DENIED_X86_64: dict[str, int] = {
    # System V IPC, POSIX message queues
    "shmget": 29, "shmat": 30, "shmctl": 31, "semget": 64, "semop": 65, "semctl": 66,
    "msgget": 68, "msgsnd": 69, "msgrcv": 70, "msgctl": 71, "semtimedop": 220,
    "mq_open": 240, "mq_unlink": 241, "mq_timedsend": 242, "mq_timedreceive": 243,
    "mq_notify": 244, "mq_getsetattr": 245,
    # other processes
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312,
    "pidfd_getfd": 438,
    # namespaces and mounts
    "unshare": 272, "setns": 308, "mount": 165, "umount2": 166, "pivot_root": 155,
    "chroot": 161, "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
    "fsmount": 432, "fspick": 433, "mount_setattr": 442,
    # kernel attack surface
    "bpf": 321, "perf_event_open": 298, "userfaultfd": 323, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "keyctl": 250, "add_key": 248,
    "request_key": 249, "kexec_load": 246, "kexec_file_load": 320, "init_module": 175,
    "finit_module": 313, "delete_module": 176, "acct": 163, "swapon": 167, "swapoff": 168,
    "reboot": 169, "sethostname": 170, "setdomainname": 171, "iopl": 172, "ioperm": 173,
    "personality": 135, "quotactl": 179, "lookup_dcookie": 212, "name_to_handle_at": 303,
    "open_by_handle_at": 304, "clock_settime": 227, "settimeofday": 164, "adjtimex": 159,
    "clock_adjtime": 305, "fanotify_init": 300, "move_pages": 279, "migrate_pages": 256,
    "mbind": 237, "set_mempolicy": 238, "vhangup": 153, "uselib": 134, "syslog": 103,
}
CLONE = 56
CLONE3 = 435
CLONE_NEW_FLAGS = (0x00000080 | 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000
                   | 0x10000000 | 0x20000000 | 0x40000000)
"""CLONE_NEWTIME, NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET."""

# classic BPF opcodes and seccomp return values
_LD_W_ABS = 0x20   # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15      # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x35      # BPF_JMP | BPF_JGE | BPF_K
_JSET_K = 0x45     # BPF_JMP | BPF_JSET | BPF_K
_RET_K = 0x06      # BPF_RET | BPF_K
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000

# offsets in struct seccomp_data {int nr; u32 arch; u64 ip; u64 args[6];}
_NR, _ARCH, _ARG0_LO = 0, 4, 16


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def filter_program(machine: str | None = None) -> bytes | None:
    """The filter as ``struct sock_filter[]`` bytes, or None off x86-64."""
    if (machine or platform.machine()) not in ("x86_64", "AMD64"):
        return None
    denied = sorted(DENIED_X86_64.values())
    # layout: 0 ld arch | 1 jeq x86_64 | 2 ret EPERM | 3 ld nr | 4 jge x32 | denied checks |
    #         clone3 | clone | ret ALLOW | EPERM | ENOSYS | clone: ld arg0 | jset | ALLOW
    n_checks = len(denied)
    first_check = 5
    clone3_at = first_check + n_checks
    clone_at = clone3_at + 1
    allow_at = clone_at + 1
    eperm_at = allow_at + 1
    enosys_at = eperm_at + 1
    clone_body = enosys_at + 1
    prog = [
        _insn(_LD_W_ABS, 0, 0, _ARCH),
        _insn(_JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        _insn(_RET_K, 0, 0, RET_ERRNO | errno.EPERM),  # 32-bit syscalls of an x86-64 task
        _insn(_LD_W_ABS, 0, 0, _NR),
        _insn(_JGE_K, eperm_at - 5, 0, X32_SYSCALL_BIT),
    ]
    for i, nr in enumerate(denied):
        pc = first_check + i
        prog.append(_insn(_JEQ_K, eperm_at - pc - 1, 0, nr))
    prog.append(_insn(_JEQ_K, enosys_at - clone3_at - 1, 0, CLONE3))
    prog.append(_insn(_JEQ_K, clone_body - clone_at - 1, 0, CLONE))
    prog.append(_insn(_RET_K, 0, 0, RET_ALLOW))
    prog.append(_insn(_RET_K, 0, 0, RET_ERRNO | errno.EPERM))
    prog.append(_insn(_RET_K, 0, 0, RET_ERRNO | errno.ENOSYS))
    prog.append(_insn(_LD_W_ABS, 0, 0, _ARG0_LO))
    prog.append(_insn(_JSET_K, 0, 1, CLONE_NEW_FLAGS))
    prog.append(_insn(_RET_K, 0, 0, RET_ERRNO | errno.EPERM))
    prog.append(_insn(_RET_K, 0, 0, RET_ALLOW))
    if any(eperm_at - pc - 1 > 255 for pc in range(first_check, clone3_at)):
        raise AssertionError("seccomp filter too long for 8-bit jumps")
    return b"".join(prog)
