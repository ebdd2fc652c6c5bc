"""TrainPanel: a view of an `mmpt.jobs` job: config form, Start / Stop / Resume, progress, live curves, log, runs.

The job is a child process (`python -m mmpt pretrain ...`), so the kernel stays free while it trains. One
Poller thread reads the job's new events and figures a few times a second and assigns widget values (never
prints); the curves are SVG regenerated in place at most twice a second. Re-creating the panel on a run that
has a job (after a kernel restart, too) attaches to it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import ipywidgets as W

from mmpt.notebook import html as H
from mmpt.notebook.curves import Curves
from mmpt.notebook.poller import Poller
from mmpt.notebook.svg import line_chart

PAIRS = ("image-text", "audio-text", "image-audio")
CHART_EVERY_S = 0.5  # curves are redrawn at most this often
STATUS_EVERY_S = 1.0  # run_status (reads two files, checks the pid) at most this often while alive


def _is_run(path: str | Path) -> bool:
    return (Path(path) / "config.toml").is_file() or (Path(path) / "job.json").is_file()


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return (
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else f"{seconds // 60}:{seconds % 60:02d}"
    )


class TrainPanel:
    """Start, follow, stop and resume a training job from a notebook; `TrainPanel(dataset)` or `TrainPanel(run)`.

    >>> panel = TrainPanel("demo.lance", run="runs/r1", model="tiny", max_steps=200)
    >>> panel.start()          # returns at once; the panel follows the job
    >>> panel.progress()       # {"step", "total", "eta_s", "samples_per_s", "losses", "mem_gb", ...}
    >>> panel.stop()           # the trainer checkpoints and the process group ends
    >>> TrainPanel("runs/r1")  # later, or after a kernel restart: attaches to the run
    """

    def __init__(
        self,
        target: Any = None,
        *,
        run: str | Path | None = None,
        runs_root: str | Path | None = None,
        kind: str = "pretrain",
        hz: float = 4.0,
        **config: Any,
    ) -> None:
        from mmpt import jobs

        self._jobs = jobs
        if target is not None and not hasattr(target, "uri") and _is_run(target) and run is None:
            run, target = target, None
        data = getattr(target, "uri", target)
        self.job: Any = None
        self.curves = Curves()
        self.overlays: dict[str, Curves] = {}
        self._hz = hz
        self._poller: Poller | None = None
        self._chart_version = -1
        self._chart_time = 0.0
        self._status_time = 0.0
        self._state = ""
        self._stopping: threading.Thread | None = None
        self._build_form(kind, data, run, config)
        self.runs_root = Path(runs_root) if runs_root else (Path(run).parent if run else None)
        self._build_view()
        if (
            run is not None
            and _is_run(run)
            and ((Path(run) / "job.json").is_file() or (Path(run) / "status.json").is_file())
        ):
            self.attach(run)
        self.refresh_runs()

    # --- widgets ------------------------------------------------------------------------------------
    def _build_form(self, kind: str, data: Any, run: Any, config: dict[str, Any]) -> None:
        c = dict(config)
        pairs = c.pop("pairs", ",".join(PAIRS))
        pairs = pairs.split(",") if isinstance(pairs, str) else list(pairs)
        style = {"description_width": "90px"}
        lay = W.Layout(width="300px")
        self.kind_w = W.ToggleButtons(options=["pretrain", "finetune"], value=kind)
        self.data_w = W.Text(value=str(data or ""), description="dataset", style=style, layout=lay)
        self.run_w = W.Text(value=str(run or ""), description="run folder", style=style, layout=lay)
        self.model_w = W.Combobox(
            value=str(c.pop("model", "tiny")),
            options=["tiny", "tiny-conv", "small", "base", "ViT-B-32"],
            description="model",
            style=style,
            layout=lay,
        )
        self.from_w = W.Text(
            value=str(c.pop("source", c.pop("from_", "")) or ""),
            description="from",
            placeholder="run folder, open_clip file, hf:minilm",
            style=style,
            layout=lay,
        )
        self.freeze_w = W.Text(
            value=",".join(c.pop("freeze", []) or []),
            description="freeze",
            placeholder="e.g. text or image,text",
            style=style,
            layout=lay,
        )
        self.pair_ws = {
            p: W.Checkbox(value=p in pairs, description=p, indent=False, layout=W.Layout(width="110px"))
            for p in PAIRS
        }
        self.epochs_w = W.BoundedIntText(
            value=int(c.pop("epochs", 1) or 1),
            min=1,
            max=10_000,
            description="epochs",
            style=style,
            layout=lay,
        )
        self.max_steps_w = W.BoundedIntText(
            value=int(c.pop("max_steps", 0) or 0),
            min=0,
            max=10**9,
            description="max steps",
            tooltip="0: the epochs decide",
            style=style,
            layout=lay,
        )
        self.batch_w = W.BoundedIntText(
            value=int(c.pop("batch_size", 32)),
            min=1,
            max=65536,
            description="batch size",
            style=style,
            layout=lay,
        )
        self.lr_w = W.FloatText(value=float(c.pop("lr", 1e-3)), description="lr", style=style, layout=lay)
        self.device_w = W.Dropdown(
            options=["auto", "cpu", "cuda"],
            value=c.pop("device", "auto"),
            description="device",
            style=style,
            layout=lay,
        )
        self.workers_w = W.BoundedIntText(
            value=int(c.pop("num_workers", 0)), min=0, max=64, description="workers", style=style, layout=lay
        )
        overrides = c.pop("overrides", [])
        self.set_w = W.Textarea(
            value="\n".join(overrides),
            description="--set",
            placeholder="train.warmup_steps=10",
            style=style,
            layout=W.Layout(width="300px", height="52px"),
        )
        self.extra = c  # any other verb flag, passed through to mmpt.jobs.start
        self.kind_w.observe(lambda _: self._show_kind(), names="value")

    def _build_view(self) -> None:
        self.start_w = W.Button(description="Start", button_style="success", icon="play").add_class(
            "mmpt-start"
        )
        self.stop_w = W.Button(
            description="Stop", button_style="danger", icon="stop", disabled=True
        ).add_class("mmpt-stop")
        self.resume_w = W.Button(description="Resume", icon="repeat", disabled=True).add_class("mmpt-resume")
        self.start_w.on_click(lambda _: self._guard(self.start))
        self.stop_w.on_click(lambda _: self._stop_in_background())
        self.resume_w.on_click(lambda _: self._guard(self.resume))
        self.bar_w = W.FloatProgress(value=0, min=0, max=1, layout=W.Layout(width="300px")).add_class(
            "mmpt-bar"
        )
        self.progress_w = W.HTML("<span class='mmpt-progress-text'>not started</span>").add_class(
            "mmpt-progress"
        )
        self.chart_w = W.HTML(line_chart({}, title="training loss per pair")).add_class("mmpt-loss-chart")
        self.val_w = W.HTML().add_class("mmpt-val-chart")
        self.log_w = W.HTML().add_class("mmpt-log")
        self.message_w = W.HTML().add_class("mmpt-message")
        self.runs_w = W.SelectMultiple(
            options=[],
            rows=6,
            layout=W.Layout(width="620px"),
            description="overlay",
            style={"description_width": "60px"},
        )
        self.runs_w.observe(lambda c: self.overlay([v for v in c["new"]]), names="value")
        self.refresh_w = W.Button(description="refresh runs", icon="refresh")
        self.refresh_w.on_click(lambda _: self.refresh_runs())
        self.attach_w = W.Button(
            description="follow selected", tooltip="attach the panel to the selected run"
        )
        self.attach_w.on_click(
            lambda _: self.runs_w.value and self._guard(lambda: self.attach(self.runs_w.value[0]))
        )
        self.runs_table_w = W.HTML().add_class("mmpt-runs")
        self._finetune_box = W.VBox([self.from_w, self.freeze_w])
        form = W.VBox(
            [
                self.kind_w,
                self.data_w,
                self.run_w,
                self.model_w,
                self._finetune_box,
                W.HBox(list(self.pair_ws.values())),
                self.epochs_w,
                self.max_steps_w,
                self.batch_w,
                self.lr_w,
                self.device_w,
                self.workers_w,
                self.set_w,
            ]
        )
        follow = W.VBox(
            [
                W.HBox([self.start_w, self.stop_w, self.resume_w]),
                W.HBox([self.bar_w, self.progress_w]),
                self.message_w,
                W.HBox([self.chart_w, self.val_w], layout=W.Layout(flex_flow="row wrap")),
                self.log_w,
            ]
        )
        runs = W.VBox([W.HBox([self.refresh_w, self.attach_w]), self.runs_w, self.runs_table_w])
        self.tabs = W.Tab(children=[follow, form, runs])
        for i, title in enumerate(("job", "config", "runs")):
            self.tabs.set_title(i, title)
        self.widget = W.VBox([self.tabs]).add_class("mmpt-train-panel")
        self._show_kind()

    def _show_kind(self) -> None:
        finetune = self.kind_w.value == "finetune"
        self._finetune_box.layout.display = None if finetune else "none"

    # --- facade -------------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The job's settings as `mmpt.jobs.start` keywords (the verb's CLI flags), read from the form."""
        cfg: dict[str, Any] = {
            "data": self.data_w.value or None,
            "model": self.model_w.value or None,
            "pairs": ",".join(p for p, w in self.pair_ws.items() if w.value),
            "batch_size": self.batch_w.value,
            "lr": self.lr_w.value,
            "device": self.device_w.value,
            "num_workers": self.workers_w.value,
        }
        if self.max_steps_w.value:
            cfg["max_steps"] = self.max_steps_w.value
        else:
            cfg["epochs"] = self.epochs_w.value
        overrides = [line.strip() for line in self.set_w.value.splitlines() if line.strip()]
        if overrides:
            cfg["overrides"] = overrides
        if self.kind_w.value == "finetune":
            cfg["source"] = self.from_w.value or None
            cfg["freeze"] = [f.strip() for f in self.freeze_w.value.split(",") if f.strip()] or None
        return {**cfg, **self.extra}

    def start(self) -> TrainPanel:
        """Start a job from the form's settings on the run folder; the panel follows it."""
        if self.job is not None and self.job.is_alive():
            raise RuntimeError(f"a job is already running on {self.job.run}; stop it first")
        if not self.run_w.value:
            raise ValueError("give a run folder")
        self.job = self._jobs.start(self.kind_w.value, self.run_w.value, **self.config())
        self._follow(fresh=True)
        return self

    def stop(self, timeout: float = 30.0) -> dict[str, Any]:
        """Stop the job (it checkpoints; its process group ends) and return its final status."""
        if self.job is None:
            return {}
        self._message("stopping (the trainer writes a checkpoint) ...")
        status = self.job.stop(timeout)
        self._tick()
        return status

    def resume(self) -> TrainPanel:
        """Continue the run from its latest checkpoint in a new job."""
        if self.job is None:
            raise RuntimeError("no job to resume: start one or attach to a run")
        self.job = self.job.resume()
        self._follow(fresh=False)
        return self

    def attach(self, run: str | Path) -> TrainPanel:
        """Follow the job of an existing run directory (running or ended), e.g. after a kernel restart."""
        self._stop_poller()
        self.job = self._jobs.attach(run)
        self.run_w.value = str(run)
        self._follow(fresh=True)
        return self

    def progress(self) -> dict[str, Any]:
        """The job's latest figures (step, total, eta_s, samples_per_s, losses, mem_gb, ...)."""
        return self.job.progress() if self.job is not None else {}

    def state(self) -> str:
        """The run's state as last seen: running, stopped, finished, failed, crashed ('' before a job)."""
        return self._state

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Block until the job ends and the panel has drawn its final state; returns the status."""
        status = self.job.wait(timeout)
        if self._poller is not None:
            self._poller.stop(timeout=5)
        self._tick()
        return status

    def overlay(self, runs: list[str] | None = None) -> list[str] | TrainPanel:
        """Overlay these past runs' loss curves (dashed), or read which are overlaid."""
        if runs is None:
            return list(self.overlays)
        self.overlays = {str(r): Curves.of_run(r) for r in runs}
        self._chart_version = -1
        self._draw_charts(force=True)
        return self

    def runs(self) -> Any:
        """The runs under the runs folder (mmpt.runs.list_runs), or None without a folder."""
        from mmpt.runs import list_runs

        if self.runs_root is None or not self.runs_root.is_dir():
            return None
        return list_runs(self.runs_root)

    def refresh_runs(self) -> TrainPanel:
        """Re-read the runs table."""
        table = self.runs()
        if table is None or table.empty:
            self.runs_table_w.value = "<em>no runs yet</em>"
            return self
        self.runs_w.options = [
            (f"{r['name']} · {r['status']} · step {r['step']}/{r['total_steps']}", r["path"])
            for _, r in table.iterrows()
        ]
        cols = [
            "name",
            "kind",
            "status",
            "model",
            "step",
            "total_steps",
            "best_metric",
            "started",
            "duration_s",
        ]
        self.runs_table_w.value = H.table(
            table.to_dict("records"), cols, css_class="mmpt-table mmpt-runs-table"
        )
        return self

    def close(self) -> None:
        """Stop following (the job itself keeps running) and close the widgets."""
        self._stop_poller()
        self.widget.close()

    @property
    def overhead(self) -> float:
        """CPU fraction of one core the follower thread used (0.01 = 1%)."""
        return self._poller.cpu_fraction if self._poller is not None else 0.0

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        return self.widget._repr_mimebundle_(**kwargs)

    # --- following ----------------------------------------------------------------------------------
    def _follow(self, fresh: bool) -> None:
        self._stop_poller()
        if fresh:
            self.curves.reset()
        self._state = ""
        self._status_time = 0.0
        self._message("")
        self.tabs.selected_index = 0
        self._tick()
        self._poller = Poller(self._tick, hz=self._hz, name="mmpt-train-panel").start()

    def _tick(self) -> bool:
        """One poll: new events into the curves, figures into the progress line, state into the buttons."""
        job = self.job
        if job is None:
            return False
        self.curves.feed(job.events())
        p = job.progress()
        alive = job.is_alive()
        now = time.monotonic()
        if not alive or now - self._status_time >= STATUS_EVERY_S:
            self._state = job.status()["state"]
            self._status_time = now
        state = self._state if not alive or self._state != "" else "starting"
        if alive and state not in ("running", "starting"):
            state = "starting"
        step, total = p.get("step"), p.get("total")
        if total:
            self.bar_w.value = min(1.0, (step or 0) / total)
        sps = p.get("samples_per_s")
        mem = p.get("mem_gb")
        text = (
            f"<span class='mmpt-progress-text' data-state='{state}'><b>{state}</b> · step "
            f"<span class='mmpt-step'>{step if step is not None else '-'}</span>/{total or '-'} · ETA "
            f"{_fmt_s(p.get('eta_s'))} · {f'{sps:.0f}' if sps else '-'} samples/s · memory "
            f"{f'{mem:.2f} GB' if mem is not None else '-'}"
            + (f" · loss {p['loss']:.3f}" if p.get("loss") is not None else "")
            + "</span>"
        )
        if self.progress_w.value != text:
            self.progress_w.value = text
        self.start_w.disabled = alive
        self.stop_w.disabled = not alive
        self.resume_w.disabled = alive or state not in ("stopped", "crashed", "failed")
        self._draw_charts(force=not alive)
        log = H.esc("\n".join(job.log_tail(12)))
        log_html = (
            f"<pre class='mmpt-log-text' style='max-height:12em;overflow:auto;font-size:11px'>{log}</pre>"
        )
        if self.log_w.value != log_html:
            self.log_w.value = log_html
        if not alive:
            status = job.status()
            if status.get("error") or status.get("reason"):
                self._message(f"{state}: {status.get('error') or status.get('reason')}", error=True)
            elif self.message_w.value.startswith("<span style='color:#333'>stopping"):
                self._message(f"{state} at step {step}")
            self.refresh_runs()
        return alive

    def _draw_charts(self, force: bool = False) -> None:
        """Redraw the SVG curves when there is something new, at most every CHART_EVERY_S seconds."""
        now = time.monotonic()
        if self.curves.version == self._chart_version or (
            not force and now - self._chart_time < CHART_EVERY_S
        ):
            return
        self._chart_version, self._chart_time = self.curves.version, now
        series = dict(self.curves.train)
        dashed = []
        for run, curves in self.overlays.items():
            for name, points in curves.train.items():
                key = f"{Path(run).name}:{name}"
                series[key] = points
                dashed.append(key)
        self.chart_w.value = line_chart(
            series, title="training loss per pair", dashed=dashed, css_class="mmpt-chart mmpt-loss-svg"
        )
        if self.curves.val:
            self.val_w.value = line_chart(
                self.curves.val, title="validation", css_class="mmpt-chart mmpt-val-svg"
            )

    def _stop_poller(self) -> None:
        if self._poller is not None:
            self._poller.stop()
            self._poller = None

    def _stop_in_background(self) -> None:
        """The Stop button: stop in a thread so the kernel answers other cells while the trainer checkpoints."""
        if self._stopping is not None and self._stopping.is_alive():
            return
        self.stop_w.disabled = True
        self._stopping = threading.Thread(
            target=lambda: self._guard(self.stop), name="mmpt-stop", daemon=True
        )
        self._stopping.start()

    def _guard(self, action: Any) -> None:
        """Run a button's action; an error is shown in the panel, not raised into the widget callback."""
        try:
            action()
        except Exception as exc:
            self._message(str(exc), error=True)

    def _message(self, text: str, error: bool = False) -> None:
        colour = "#b00" if error else "#333"
        self.message_w.value = f"<span style='color:{colour}'>{H.esc(text)}</span>" if text else ""
