"""Where a worker's resident memory goes (docs/performance.md, "Memory"): importing torch and wmbench, one
``quick`` task of Fashion-MNIST, an epoch of small_cnn on the attacker's pool, vgg_like training and
prediction. Prints resident and peak (VmHWM, reset before each step) megabytes; Linux only.

    PYTHONPATH=. .venv/bin/python tests/benchmarks/scripts/memory_breakdown.py
"""

from pathlib import Path


def _status(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    raise SystemExit("needs Linux's /proc/self/status")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def main() -> None:
    import torch

    print(f"import torch: {_status('VmRSS'):.0f} MB resident")
    import attacks  # noqa: F401  (what a worker imports)
    import bench.cells  # noqa: F401
    import defenses  # noqa: F401
    from bench.api import Context
    from bench.models import create_model
    from bench.settings import load_task, make_settings
    from bench.train import fit, predict_labels

    print(f"import wmbench: {_status('VmRSS'):.0f} MB resident")
    settings = make_settings(dataset="fashion-mnist", profile="quick", results_dir="/tmp/wmbench-mem-r",
                             cache_dir="/tmp/wmbench-mem-c")
    task = load_task(settings, 0)
    print(f"one quick task (30k + 30k + 10k images): {_status('VmRSS'):.0f} MB resident")
    ctx = Context(torch.device("cpu"), 0, settings.profile)

    def model(arch: str):
        return create_model(arch, in_channels=1, num_classes=10, image_size=(28, 28), mean=(0.5,), std=(0.25,))

    _reset_peak()
    fit(model("small_cnn"), task.x_pool, task.y_pool, ctx=ctx, epochs=1, batch_size=128, lr=2e-3)
    print(f"small_cnn, one epoch on the pool: peak {_status('VmHWM'):.0f} MB")
    vgg = model("vgg_like")
    _reset_peak()
    fit(vgg, task.x_pool[:2048], task.y_pool[:2048], ctx=ctx, epochs=1, batch_size=128, lr=2e-3)
    print(f"vgg_like, one epoch on 2,048 images: peak {_status('VmHWM'):.0f} MB")
    _reset_peak()
    predict_labels(vgg, task.x_test)
    print(f"vgg_like, predicting the 10k test images: peak {_status('VmHWM'):.0f} MB")


if __name__ == "__main__":
    main()
