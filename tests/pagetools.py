"""Drive pages with Streamlit's AppTest: open one, act on a widget, read what is shown."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from procs import ROOT


def open_page(page: str, via_app: bool = True, timeout: float = 120, **query) -> AppTest:
    """Run `page` once (through app.py's router unless via_app is False) and check it raised nothing."""
    if via_app:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
        at.switch_page(page)
    else:
        at = AppTest.from_file(str(ROOT / page), default_timeout=timeout)
    at.query_params.update(query)
    at.run()
    assert not at.exception, at.exception
    return at


def rerun(widget) -> AppTest:
    at = widget.run()
    assert not at.exception, at.exception
    return at


def texts(elements) -> str:
    """The elements' text as a reader sees it (markdown escapes removed)."""
    return "\n".join(str(e.value) for e in elements).replace("\\", "")
