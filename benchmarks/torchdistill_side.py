"""Side (c) of the benchmark (benchmarks/training.py): torchdistill 1.1.5's TrainingBox / DistillationBox with
its own losses (KDLoss alpha 0.1, T 4: the project's CE 0.1 + KD 0.9; CRDLoss with Linear4CRD and
CRDDatasetWrapper, 16,384 negatives, CE 1 + CRD 0.8), always in fp32, driven the way torchdistill's example
scripts drive them.

    pip install torchdistill==1.1.5          # not a project dependency
"""
from __future__ import annotations

from benchmarks.inputs import CIFAR100_TRAIN, CRD_NEGATIVES, images_needed, normalise, random_cifar100
from benchmarks.timing import Timer


def torchdistill_config(args, method: str, teacher, student) -> dict:
    """torchdistill's train config for the method, as its official configs write it (keys of v1.x)."""
    import torch
    negatives = getattr(args, "crd_negatives", CRD_NEGATIVES)
    loader = {"dataset_id": "train", "sampler": {"class_or_func": torch.utils.data.SequentialSampler, "kwargs": {}},
              "kwargs": {"batch_size": args.batch, "num_workers": 0, "drop_last": True},
              "collate_fn": "benchmark_normalise_collate"}
    optimizer = {"key": "SGD", "kwargs": {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}}
    cross_entropy = {"criterion": {"key": "CrossEntropyLoss", "kwargs": {"reduction": "mean"}},
                     "criterion_wrapper": {"key": "SimpleLossWrapper", "kwargs": {
                         "input": {"is_from_teacher": False, "module_path": ".", "io": "output"},
                         "target": {"uses_label": True}}},
                     "weight": 1.0}
    config = {"num_epochs": 1, "train_data_loader": loader, "optimizer": optimizer}
    if method == "student":
        config["model"] = {"forward_proc": "forward_batch_only"}
        config["criterion"] = {"key": "WeightedSumLoss", "kwargs": {"sub_terms": {"ce": cross_entropy}}}
    elif method == "kd":
        config["teacher"] = {"forward_proc": "forward_batch_only", "requires_grad": False}
        config["student"] = {"forward_proc": "forward_batch_only"}
        kd = {"criterion": {"key": "KDLoss", "kwargs": {
            "student_module_path": ".", "student_module_io": "output", "teacher_module_path": ".",
            "teacher_module_io": "output", "temperature": 4.0, "alpha": 0.1, "reduction": "batchmean"}},
              "weight": 1.0}
        config["criterion"] = {"key": "WeightedSumLoss", "kwargs": {"sub_terms": {"kd": kd}}}
    elif method == "crd":
        loader["dataset_wrapper"] = {"key": "CRDDatasetWrapper", "kwargs": {
            "num_negative_samples": negatives, "mode": "exact", "ratio": 1.0}}

        def side(model, hooked_inputs):
            return {"forward_proc": "forward_batch_supp_dict",
                    "auxiliary_model_wrapper": {"key": "Linear4CRD", "kwargs": {
                        "input_module_path": "model.pool", "power": 2, "linear_kwargs": {
                            "in_features": model.fc.in_features, "out_features": 128, "bias": True}}},
                    "forward_hook": {"input": hooked_inputs, "output": ["model.pool", "normalizer"]},
                    "requires_grad": True, "frozen_modules": ["model"] if model is teacher else []}
        config["teacher"], config["student"] = side(teacher, []), side(student, ["empty"])
        crd = {"criterion": {"key": "CRDLoss", "kwargs": {
            "teacher_norm_module_path": "normalizer", "student_norm_module_path": "normalizer",
            "student_empty_module_path": "empty", "input_size": 128, "output_size": CIFAR100_TRAIN,
            "num_negative_samples": negatives, "num_samples": CIFAR100_TRAIN, "temperature": 0.07,
            "momentum": 0.5, "eps": 1e-7}}, "weight": 0.8}
        config["criterion"] = {"key": "WeightedSumLoss", "kwargs": {"sub_terms": {"ce": cross_entropy, "crd": crd}}}
    return config


def run_torchdistill(args, method: str, trained: dict | None = None) -> dict:
    """(c): torchdistill's boxes, driven the way its example scripts drive them (one epoch's loop)."""
    import logging
    import torch
    from torch.utils.data import Dataset
    from torchdistill.core.distillation import get_distillation_box
    from torchdistill.core.training import get_training_box
    from torchdistill.datasets.registry import register_collate_func
    from models import build_model
    logging.getLogger().setLevel(logging.WARNING)  # torchdistill logs on the root logger
    device = torch.device(args.device)

    class RandomCifar100(Dataset):  # CRDDatasetWrapper reads `classes` and `targets`
        def __init__(self, count):
            self.images, labels = random_cifar100(count)
            self.targets, self.classes = labels.tolist(), list(range(100))

        def __len__(self):
            return len(self.targets)

        def __getitem__(self, index):
            return self.images[index], self.targets[index]

    @register_collate_func(key="benchmark_normalise_collate")
    def collate(rows):
        supp = torch.utils.data.default_collate([r[2] for r in rows])
        return normalise(torch.stack([r[0] for r in rows])), torch.tensor([r[1] for r in rows]), supp

    torch.manual_seed(0)  # the same weights as (a) and (b): teacher first, then student
    teacher, student = build_model(args.teacher, 100), build_model(args.student, 100)
    teacher.eval()
    datasets = {"train": RandomCifar100(images_needed(args))}
    config = torchdistill_config(args, method, teacher, student)
    if method == "student":
        box = get_training_box(student.to(device), datasets, config, device, None, False, 1.0)
    else:
        box = get_distillation_box(teacher.to(device), student.to(device), datasets, config, device, None, False, 1.0)
    box.criterion.to(device)
    timer = Timer(args, device)
    box.pre_epoch_process(epoch=0)
    for x, y, supp in box.train_data_loader:
        timer.step()
        supp = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in supp.items()}
        loss = box.forward_process(x.to(device, non_blocking=True), y.to(device, non_blocking=True), supp)
        box.post_forward_process(loss=loss)
    timer.step()
    if trained is not None:
        trained.update(student.state_dict())
    return timer.result()
