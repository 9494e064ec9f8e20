"""The first page of a PDF attachment as a small PNG, rendered by PDFium in a child process.

PDF is a hostile format: a crafted file can make a renderer spin, eat memory or crash. So
the page is rendered in a process of its own (`python -m web.pdf_preview`, PDF on stdin,
PNG on stdout) under limits on CPU time, memory and wall-clock time, never in the web
process; whatever goes wrong there, the reader gets "no preview" and the page stays up.
Nothing is written to disk: the browser keeps the picture for a while (the route says
so), and a preview asked for again is rendered again.
"""

from __future__ import annotations

import io
import resource
import subprocess
import sys
import threading

# A bigger PDF is offered as a download only.
MAX_PDF_BYTES = 25 * 1024 * 1024
# The picture fits in this box (CSS pixels, twice over for sharp screens).
MAX_WIDTH, MAX_HEIGHT = 480, 640
WALL_SECONDS = 10
CPU_SECONDS = 8
MEMORY_BYTES = 1024 * 1024 * 1024
# Renders at once per web process: previews must not take both cores from the pages.
_RENDERS = threading.BoundedSemaphore(2)


def first_page_png(pdf: bytes) -> bytes | None:
    """The first page of `pdf` as a PNG, or None when it cannot be had within the limits."""
    if b"%PDF-" not in pdf[:1024] or len(pdf) > MAX_PDF_BYTES:
        return None
    if not _RENDERS.acquire(timeout=WALL_SECONDS):
        return None
    try:
        done = subprocess.run(
            [sys.executable, "-m", "web.pdf_preview"],
            input=pdf,
            capture_output=True,
            timeout=WALL_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    finally:
        _RENDERS.release()
    png = done.stdout
    return png if done.returncode == 0 and png.startswith(b"\x89PNG\r\n\x1a\n") else None


def _limit_myself() -> None:
    """The child's first act: caps on its own CPU time and memory, and no core file (set
    here rather than between fork and exec, which is unsafe in a threaded web server)."""
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def render(pdf: bytes) -> bytes:
    """The child's work: page one of `pdf`, scaled into the box, as PNG bytes."""
    import pypdfium2

    document = pypdfium2.PdfDocument(pdf)
    try:
        page = document[0]
        width, height = page.get_size()
        if width <= 0 or height <= 0:
            raise ValueError("the first page has no size")
        scale = min(MAX_WIDTH / width, MAX_HEIGHT / height)
        picture = page.render(scale=scale).to_pil()
        out = io.BytesIO()
        picture.save(out, format="PNG", optimize=True)
        return out.getvalue()
    finally:
        document.close()


if __name__ == "__main__":
    _limit_myself()
    sys.stdout.buffer.write(render(sys.stdin.buffer.read()))
