"""The static status page (`sdesk status-page`): one HTML file, no script, no outside resource,
every stored text escaped. Current incidents per service first, then the history."""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

STATES = {"investigating": "#d00000", "identified": "#ff8c00", "monitoring": "#1f6feb", "resolved": "#2da44e"}

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#1f2328;line-height:1.45}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d0d7de}
.ok{background:#dafbe1;padding:.8rem 1rem;border-radius:6px}.bad{background:#ffebe9;padding:.8rem 1rem;border-radius:6px}
.incident{border:1px solid #d0d7de;border-radius:6px;padding:.6rem 1rem;margin:.8rem 0}
.state{font-weight:600;text-transform:capitalize}.when{color:#57606a;font-size:.9rem}
ul.services{list-style:none;padding:0}ul.services li{padding:.3rem 0;border-bottom:1px solid #eee}
.text{white-space:pre-wrap;overflow-wrap:anywhere}footer{margin-top:3rem;color:#57606a;font-size:.85rem}
"""


def _current(incident: dict[str, Any]) -> bool:
    return incident["updates"][0]["state"] != "resolved" and not incident["resolved_at"]


def _when(stamp: str) -> str:
    return escape(stamp[:16].replace("T", " ") + " UTC")


def _incident(i: dict[str, Any]) -> str:
    updates = "".join(
        f'<li><span class="state" style="color:{STATES.get(u["state"], "#57606a")}">{escape(u["state"])}</span> '
        f'<span class="when">{_when(u["at"])}</span><div class="text">{escape(u["text"])}</div></li>'
        for u in i["updates"])
    where = " · ".join(escape(str(v)) for v in (i.get("service"),) if v)
    return (f'<div class="incident"><strong>{escape(i["title"])}</strong> '
            f'<span class="when">{escape(i["ref"])}{" · " + where if where else ""}</span><ul>{updates}</ul></div>')


def page(title: str, incidents: list[dict[str, Any]], services: list[str], now: datetime, days: int) -> str:
    current = [i for i in incidents if _current(i)]
    names = sorted({*services, *(i["service"] for i in incidents if i.get("service"))})
    affected = {i["service"] for i in current if i.get("service")}
    summary = (f'<p class="bad">{len(current)} current incident{"s" if len(current) != 1 else ""}</p>' if current
               else '<p class="ok">All systems operational</p>')
    service_list = "".join(
        f'<li>{escape(n)}: <strong style="color:{"#d00000" if n in affected else "#2da44e"}">'
        f'{"incident" if n in affected else "operational"}</strong></li>' for n in names)
    past = [i for i in incidents if not _current(i)]
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>{summary}"
        + (f'<ul class="services">{service_list}</ul>' if names else "")
        + ("<h2>Current incidents</h2>" + "".join(_incident(i) for i in current) if current else "")
        + f"<h2>The last {days} days</h2>"
        + ("".join(_incident(i) for i in past) or "<p>No incidents.</p>")
        + f"<footer>Updated {_when(now.isoformat())}</footer></body></html>\n")
