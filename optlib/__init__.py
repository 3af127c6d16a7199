"""optlib: the small PyTorch library behind *Optimization for Deep Learning*.

Modules are named after what they hold:

- :mod:`optlib.device`     device choice, seeding and the thread count
- :mod:`optlib.functions`  2-D and n-D test functions with known minima
- :mod:`optlib.data`       data sets shipped with packages (scikit-learn's digits)
- :mod:`optlib.models`     linear classifier, small MLP, accuracy
- :mod:`optlib.losses`     multiclass SVM and softmax losses with hand-derived gradients
- :mod:`optlib.grad`       numerical gradients, gradient check, Hessians
- :mod:`optlib.search`     random search and random local search
- :mod:`optlib.geometry`   curvature, critical points, convexity checks, random Hessians, basins
- :mod:`optlib.landscape`  1-D and 2-D slices of a loss, interpolation between parameter vectors
- :mod:`optlib.optim`      optimizers (``torch.optim.Optimizer`` subclasses), one file per family
- :mod:`optlib.linesearch` Armijo backtracking and the strong-Wolfe line search
- :mod:`optlib.schedules`  learning-rate schedules as LambdaLR factors
- :mod:`optlib.averaging`  iterate (Polyak) averaging and a noisy least-squares problem
- :mod:`optlib.stability`  gradient norms, clipping, NaN/inf checks
- :mod:`optlib.convergence` rates of GD and momentum on quadratics, convex bounds, slope fits
- :mod:`optlib.preconditioning` Hessian and Fisher diagonals, what adaptive methods estimate
- :mod:`optlib.curvature`  Hessian- and Gauss-Newton-vector products, CG, Lanczos, Hutchinson, spectra
- :mod:`optlib.monitoring` per-layer gradient norms, sharpness, regularized softmax regression
- :mod:`optlib.tuning`     learning-rate sweeps on a validation split, steps and time to target
- :mod:`optlib.diagnostics` training sanity checks: loss at init, overfit a tiny subset, update ratios
- :mod:`optlib.speedup`    speed-ups measured at each method's best stable learning rate
- :mod:`optlib.run`        run loops that record a :class:`~optlib.run.Trace`
- :mod:`optlib.plot`       every figure of the book
- :mod:`optlib.widgets`    every interactive control of the book
- :mod:`optlib.grading`    exercise checks (``checker``), the batch grader, the exercise generator
"""
from optlib.device import describe_device, describe_runtime, get_device, seed_everything, set_num_threads

__version__ = "0.1.0"

__all__ = ["describe_device", "describe_runtime", "get_device", "seed_everything", "set_num_threads", "__version__"]
