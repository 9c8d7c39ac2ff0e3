"""Version of the sandbox image layout. Bump IMAGE_VERSION when the image must change
(a new Python, a new user); the runner itself is sent to containers at start-up."""

IMAGE_VERSION = "1"
DEFAULT_IMAGE = f"arena-sandbox:{IMAGE_VERSION}"
