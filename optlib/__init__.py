"""optlib: the small PyTorch library behind *Optimization for Deep Learning*.

Modules are named after what they hold:

- :mod:`optlib.device`     device choice and seeding
- :mod:`optlib.functions`  2-D and n-D test functions with known minima
- :mod:`optlib.data`       data sets shipped with packages (scikit-learn's digits)
- :mod:`optlib.models`     linear classifier, small MLP, accuracy
- :mod:`optlib.losses`     multiclass SVM and softmax losses with hand-derived gradients
- :mod:`optlib.grad`       numerical gradients, gradient check, Hessians
- :mod:`optlib.search`     random search and random local search
- :mod:`optlib.geometry`   curvature, critical points, convexity checks, random Hessians, basins
- :mod:`optlib.optim`      optimizers (``torch.optim.Optimizer`` subclasses)
- :mod:`optlib.run`        run loops that record a :class:`~optlib.run.Trace`
- :mod:`optlib.plot`       every figure of the book
- :mod:`optlib.widgets`    every interactive control of the book
"""
from optlib.device import describe_device, get_device, seed_everything

__version__ = "0.1.0"

__all__ = ["describe_device", "get_device", "seed_everything", "__version__"]
