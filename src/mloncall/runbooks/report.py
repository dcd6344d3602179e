"""The HTML report of an investigation: tables and reference-vs-current histograms as embedded PNGs."""

from __future__ import annotations

import base64
import io
import itertools
from typing import Any

from jinja2 import Environment, select_autoescape

from mloncall.runbooks.investigate import Investigation
from mloncall.stores.artifacts import ArtifactStore

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mloncall investigation: {{ inv.model }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}
.failed{color:#b00020;font-weight:bold}.successful{color:#1b5e20}.inconclusive{color:#8a6d00}.error{color:#b00020}
.charts{display:flex;flex-wrap:wrap;gap:1rem}.charts img{width:340px;border:1px solid #eee}
.box{background:#f6f6f6;padding:.75rem 1rem;border-left:4px solid #555}
</style></head><body>
<h1>Investigation of {{ inv.model }}</h1>
{% if inv.alert %}<p class="box">Alert <b>#{{ inv.alert.id }}</b> {{ inv.alert.rule }} ({{ inv.alert.severity }},
state {{ inv.alert.state }}, fired {{ inv.alert.fired_at or "-" }}): {{ inv.alert.summary or inv.alert.reason }}</p>{% endif %}
<p>Window {{ inv.since.isoformat() }} → {{ inv.until.isoformat() }}</p>
<h2>Assessment: {{ inv.assessment }}</h2>
<p class="box">Recommended action: <b>{{ inv.recommendation.action }}</b>: {{ inv.recommendation.why }}<br>
<code>{{ inv.recommendation.command }}</code></p>
<ul>{% for f in inv.findings %}<li>{{ f }}</li>{% endfor %}</ul>
<h2>1. Inputs: drift per feature</h2>
<p class="{{ inv.drift.outcome.label }}">{{ inv.drift.reason }}</p>
<table><tr><th>version</th><th>feature</th><th>method</th><th>score</th><th>threshold</th><th>PSI</th><th>KS</th>
<th>KS p</th><th>Wasserstein (norm.)</th><th>drifted</th><th>rows ref / cur</th></tr>
{% for r in rows %}<tr><td>v{{ r.version }}</td><td>{{ r.feature }}</td><td>{{ r.method }}</td><td>{{ fmt(r.score) }}</td>
<td>{{ fmt(r.threshold) }}</td><td>{{ fmt(r.psi) }}</td><td>{{ fmt(r.ks) }}</td><td>{{ fmt(r.ks_p) }}</td>
<td>{{ fmt(r.wasserstein_norm) }}</td><td class="{{ 'failed' if r.drifted else 'successful' }}">{{ r.drifted }}</td>
<td>{{ r.n_ref }} / {{ r.n_cur }}</td></tr>{% endfor %}</table>
<div class="charts">{% for name, png in charts %}<figure><img alt="{{ name }}" src="data:image/png;base64,{{ png }}">
<figcaption>{{ name }}: reference vs current</figcaption></figure>{% endfor %}</div>
<h2>2. Outputs</h2>
{% for c in classes %}<p>v{{ c.version }} predicted class mix: {{ c.reason }}</p>{% endfor %}
{% if inv.canary %}<p>Last canary (rollout #{{ inv.canary.rollout }}, {{ inv.canary.state }}):
{{ inv.canary.disagreement.reason if inv.canary.disagreement else "no disagreement measured" }}</p>{% endif %}
<h2>3. Performance and service</h2>
<table><tr><th>check</th><th>outcome</th><th>evidence</th></tr>
{% for c in checks %}<tr><td>{{ c.name }}</td><td class="{{ c.outcome.label }}">{{ c.outcome.label }}</td><td>{{ c.reason }}</td></tr>{% endfor %}
</table>
{% if inv.recent_deploy %}<p>Recent deploy: v{{ inv.recent_deploy.from_version }} → v{{ inv.recent_deploy.to_version }}
at {{ inv.recent_deploy.at }}</p>{% endif %}
</body></html>
"""


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def charts(inv: Investigation) -> list[tuple[str, str]]:
    """One PNG per feature (of production, else the first version that has histograms) plus the predicted-class
    mix."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: list[tuple[str, str]] = []
    # production's first, then the others: a version with too few rows in the window has no histograms
    ordered = sorted(inv.drift.versions, key=lambda v: v.version != inv.production)
    for v in [v for v in ordered if any(f.histogram is not None for f in v.features)][:1]:
        for f in v.features:
            h = f.histogram
            if h is None:
                continue
            d = h.to_dict()
            edges = d["edges"]
            centers = [(a + b) / 2 for a, b in itertools.pairwise(edges)]
            width = (edges[1] - edges[0]) * 0.4 if len(edges) > 1 else 0.4
            fig, ax = plt.subplots(figsize=(4.2, 2.6))
            ax.bar([c - width / 2 for c in centers], d["reference_share"], width=width, label="reference")
            ax.bar([c + width / 2 for c in centers], d["current_share"], width=width, label="current")
            ax.set_title(f"{f.feature} ({'drifted' if f.drifted else 'stable'})", fontsize=9)
            ax.tick_params(labelsize=7)
            ax.legend(fontsize=7)
            out.append((f.feature, _png(fig)))
            plt.close(fig)
        if v.prediction is not None:
            p = v.prediction.to_dict()
            fig, ax = plt.subplots(figsize=(4.2, 2.6))
            xs = range(len(p["classes"]))
            ax.bar([x - 0.2 for x in xs], p["reference_share"], width=0.4, label="training")
            ax.bar([x + 0.2 for x in xs], p["current_share"], width=0.4, label="predicted now")
            ax.set_xticks(list(xs), p["classes"], fontsize=7)
            ax.set_title("class mix", fontsize=9)
            ax.legend(fontsize=7)
            out.append(("class mix", _png(fig)))
            plt.close(fig)
    return out


def render(inv: Investigation) -> str:
    env = Environment(autoescape=select_autoescape(default=True))
    template = env.from_string(_TEMPLATE)
    classes = [
        {"version": v.version, "reason": v.prediction.reason}
        for v in inv.drift.versions
        if v.prediction is not None
    ]
    return template.render(
        inv=inv,
        rows=inv.drift.rows_table(),
        charts=charts(inv),
        classes=classes,
        checks=[inv.accuracy, *inv.service, *inv.quality],
        fmt=_fmt,
    )


def write(*, store: ArtifactStore, inv: Investigation) -> str:
    """Write the report atomically to the artifact store; returns where to find it."""
    stamp = inv.until.strftime("%Y%m%dT%H%M%S")
    name = f"alert-{inv.alert['id']}" if inv.alert else "model"
    key = f"reports/investigations/{inv.model}/{name}-{stamp}.html"
    store.put_bytes(key, render(inv).encode())
    return store.url(key)
