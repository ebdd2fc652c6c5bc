"""The training config form: the fields of the notebook's train panel, turned into `mmpt.jobs.start` keywords."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QSpinBox,
    QWidget,
)

from gui.settings import Settings

PAIRS = ("image-text", "audio-text", "image-audio")
PRESETS = ("tiny", "tiny-conv", "small", "base")
FREEZE = ("auto", "none", "text", "image", "audio", "image,text", "heads")


class TrainForm(QWidget):
    """Kind, run folder, dataset, model preset, pairs, epochs/steps, batch, lr, freeze, pretrained source, device."""

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.kind = QComboBox(objectName="kind")
        self.kind.addItems(["pretrain", "finetune"])
        self.run = QLineEdit(objectName="runPath", placeholderText="a new run folder, e.g. runs/r1")
        self.data = QLineEdit(objectName="trainData", placeholderText="the dataset (from the Data tab)")
        self.model = QComboBox(editable=True, objectName="model")
        self.model.addItems(PRESETS)
        self.source = QLineEdit(
            objectName="source", placeholderText="finetune: run folder, open_clip file or hf:…"
        )
        self.freeze = QComboBox(editable=True, objectName="freeze")
        self.freeze.addItems(FREEZE)
        self.pairs = {p: QCheckBox(p, checked=True, objectName=f"pair_{p}") for p in PAIRS}
        pairs_row = QHBoxLayout()
        for box in self.pairs.values():
            pairs_row.addWidget(box)
        pairs_row.addStretch(1)
        self.epochs = QSpinBox(
            objectName="epochs", minimum=0, maximum=100_000, value=1, specialValueText="(default)"
        )
        self.max_steps = QSpinBox(
            objectName="maxSteps", minimum=0, maximum=10_000_000, value=0, specialValueText="(no limit)"
        )
        self.batch = QSpinBox(objectName="batch", minimum=1, maximum=65_536, value=32)
        self.lr = QDoubleSpinBox(
            objectName="lr", decimals=6, minimum=0.0, maximum=10.0, value=1e-3, singleStep=1e-4
        )
        self.device = QComboBox(objectName="device")
        self.device.addItems(["auto", "cpu", "cuda"])
        self.device.setCurrentText(str(settings.get("train/device", "auto")))
        self.device.currentTextChanged.connect(lambda d: settings.set("train/device", d))
        self.workers = QSpinBox(objectName="numWorkers", minimum=0, maximum=64, value=0)
        self.extra = QLineEdit(
            objectName="extraSet", placeholderText="more settings: train.warmup_steps=10; …"
        )
        form = QFormLayout(self)
        for name, widget in (
            ("Kind", self.kind),
            ("Run folder", self.run),
            ("Dataset", self.data),
            ("Model", self.model),
            ("Pretrained source", self.source),
            ("Freeze", self.freeze),
            ("Pairs", pairs_row),
            ("Epochs", self.epochs),
            ("Max steps", self.max_steps),
            ("Batch size", self.batch),
            ("Learning rate", self.lr),
            ("Device", self.device),
            ("Data workers", self.workers),
            ("--set", self.extra),
        ):
            form.addRow(name, widget)
        self.kind.currentTextChanged.connect(self._kind_changed)
        self._kind_changed(self.kind.currentText())

    def _kind_changed(self, kind: str) -> None:
        finetune = kind == "finetune"
        self.source.setEnabled(finetune)
        self.freeze.setEnabled(finetune)

    def config(self) -> dict[str, Any]:
        """Keyword arguments for `mmpt.jobs.start(kind, run, **config)` (the verb's CLI flags in snake case)."""
        cfg: dict[str, Any] = {
            "data": self.data.text().strip(),
            "batch_size": self.batch.value(),
            "lr": self.lr.value(),
            "device": self.device.currentText(),
            "num_workers": self.workers.value(),
            "quiet": True,
        }
        model = self.model.currentText().strip()
        if model:
            cfg["model"] = model
        pairs = [p for p, box in self.pairs.items() if box.isChecked()]
        if len(pairs) < len(PAIRS):
            cfg["pairs"] = ",".join(pairs)
        if self.epochs.value():
            cfg["epochs"] = self.epochs.value()
        if self.max_steps.value():
            cfg["max_steps"] = self.max_steps.value()
        extra = [s.strip() for s in self.extra.text().replace(";", ",").split(",") if s.strip()]
        if extra:
            cfg["set"] = extra
        if self.kind.currentText() == "finetune":
            cfg["from"] = self.source.text().strip()
            cfg["freeze"] = self.freeze.currentText().strip() or "auto"
        return cfg

    def set_values(self, **values: Any) -> None:
        """Fill fields by name (tests and the command line): kind, run, data, model, epochs, max_steps, batch, lr,
        device, extra."""
        setters = {
            "kind": self.kind.setCurrentText,
            "run": self.run.setText,
            "data": self.data.setText,
            "model": self.model.setCurrentText,
            "epochs": self.epochs.setValue,
            "max_steps": self.max_steps.setValue,
            "batch": self.batch.setValue,
            "lr": self.lr.setValue,
            "device": self.device.setCurrentText,
            "extra": self.extra.setText,
            "source": self.source.setText,
            "freeze": self.freeze.setCurrentText,
        }
        for key, value in values.items():
            setters[key](value)
