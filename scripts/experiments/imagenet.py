"""ImageNet (ILSVRC-2012) cells of mdistiller and torchdistill: pretrained torchvision teachers read from the
torch hub cache, torchvision or zoo students, data=imagenet (torchvision's ImageNet folder layout)."""
from __future__ import annotations

from scripts.experiments.cells import FP32_LINE, Cell, fp32

# torchvision weights of the pretrained teachers: (weights enum, file in the hub cache, torchvision's top-1).
TV_WEIGHTS = {"resnet34": ("ResNet34_Weights.IMAGENET1K_V1", "resnet34-b627a593.pth", 73.314),
              "resnet18": ("ResNet18_Weights.IMAGENET1K_V1", "resnet18-f37072fd.pth", 69.758),
              "resnet50": ("ResNet50_Weights.IMAGENET1K_V1", "resnet50-0676ba61.pth", 76.13)}
ZOO_STUDENTS = ("mobilenetv1",)  # students from this project's zoo; the others are torchvision models
TITLES = {"resnet34": "ResNet-34", "resnet18": "ResNet-18", "resnet50": "ResNet-50", "mobilenetv1": "MobileNet-V1"}


def imagenet_defaults(student: str, method_defaults: list) -> list:
    return [("data", "imagenet"), ("student", student if student in ZOO_STUDENTS else "torchvision"),
            ("teacher/model", "torchvision"), *method_defaults]


def hub_checkpoint(file: str) -> str:
    # torch.hub.get_dir()/checkpoints: $TORCH_HOME/hub, else ~/.cache/torch/hub (XDG_CACHE_HOME is not followed).
    return "${oc.env:TORCH_HOME,${oc.env:HOME}/.cache/torch}/hub/checkpoints/" + file


def imagenet_common(cell: Cell, teacher: str, student: str, source: str) -> None:
    weights, file, _ = TV_WEIGHTS[teacher]
    cell.set("data.root", None, "required: data.root=PATH to ILSVRC-2012 as train/<wnid>/ and val/<wnid>/ folders")
    cell.set("data.val_size", 0, f"{source} evaluates on the ILSVRC-2012 val set (our test set) every epoch")
    if student not in ZOO_STUDENTS:
        cell.set("student.name", f"torchvision.{student}", source)
        cell.set("student.weights", None, f"{source}: the student starts from random weights")
    cell.set("teacher.model.name", f"torchvision.{teacher}", source)
    cell.set("teacher.model.weights", None, "the pretrained weights come from teacher.checkpoint, read as a state dict")
    cell.set("teacher.checkpoint", hub_checkpoint(file),
             f"torchvision's {weights} file ({source}: pretrained teacher)")
    cell.set("baseline", False)
    fp32(cell)


def imagenet_header(lines: list[str], teacher: str, name: str, launch: str = " trainer=gpu") -> list[str]:
    weights, file, acc = TV_WEIGHTS[teacher]
    return [*lines,
            f"Teacher: torchvision's pretrained {teacher} ({weights}, top-1 {acc:.2f} per torchvision), read from the torch hub",
            f"cache as a foreign state dict. Offline, download https://download.pytorch.org/models/{file} into",
            "$TORCH_HOME/hub/checkpoints/ (default ~/.cache/torch/hub/checkpoints/), or pass teacher.checkpoint=PATH; a",
            "missing file stops the run with the path it looked for. ImageNet: data.root=PATH (train/ and val/ class folders).",
            FP32_LINE, f"  python distill_train.py experiment={name} data.root=PATH{launch}"]
