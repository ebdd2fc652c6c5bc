"""mmpt.eval: zero-shot classification, retrieval, label match, linear probes and their reports.

Everything here works on embeddings (numpy arrays); names are imported on first use so that
`import mmpt.eval` does not pull in sklearn. `zero_shot` and `retrieval` share their module's name, so
import them from it: `from mmpt.eval.zero_shot import zero_shot`, `from mmpt.eval.retrieval import retrieval`.
"""

from __future__ import annotations

from mmpt.lazy import lazy_exports

_API: dict[str, str] = {
    "class_text_embeddings": "mmpt.eval.zero_shot",
    "format_prompt": "mmpt.eval.zero_shot",
    "retrieval_ranks": "mmpt.eval.retrieval",
    "label_match": "mmpt.eval.retrieval",
    "linear_probe": "mmpt.eval.probe",
    "caption_retrieval": "mmpt.eval.multi_caption",
    "multilabel_zero_shot": "mmpt.eval.multilabel",
    "evaluate_protocol": "mmpt.eval.protocol_run",
    "format_protocol": "mmpt.eval.protocol_run",
    "PROTOCOLS": "mmpt.eval.protocols",
    "classification_metrics": "mmpt.eval.metrics",
    "build_report": "mmpt.eval.report",
    "evaluate_embeddings": "mmpt.eval.report",
    "flatten": "mmpt.eval.report",
    "format_report": "mmpt.eval.report",
    "load_report": "mmpt.eval.report",
    "save_report": "mmpt.eval.report",
    "compare": "mmpt.eval.compare",
    "format_comparison": "mmpt.eval.compare",
    "render_html": "mmpt.eval.html",
    "write_html": "mmpt.eval.html",
}

__all__, __getattr__ = lazy_exports(__name__, _API)
