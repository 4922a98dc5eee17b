"""A status page's readable text, by trafilatura.

Measured on the simulator's status page (a degraded provider with two incidents), both about
1 ms a page: trafilatura kept the headline, the component table (as rows) and every incident,
and dropped the navigation and footer; readability-lxml kept the headline and table but lost
the incidents list (the part that matters) and ran the words together. Hence trafilatura.
"""

from __future__ import annotations

import trafilatura


def readable_text(html: bytes) -> str:
    """The page's main text ("" when there is none to extract)."""
    text = trafilatura.extract(html.decode("utf-8", "replace"), include_tables=True, include_comments=False)
    return (text or "").strip() + "\n"
