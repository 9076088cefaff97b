"""LIBLINEAR glue for the VOC07 SVMs: the features converted to LIBLINEAR's node format once, every fit
trained on a view of that one buffer (a fold is an array of row pointers, a class a label vector).

Determinism: LIBLINEAR shuffles coordinates with the C library's rand(); each fit re-seeds it with
srand(seed), so results do not depend on which worker process runs the fit.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np

# VISSL's SVM settings (sklearn LinearSVC defaults it relies on, and its class weights)
TOLERANCE = 1e-4
POSITIVE_WEIGHT = 2.0
NEGATIVE_WEIGHT = 1.0


class LiblinearData:
    """The whole feature matrix in LIBLINEAR's node format (index/value pairs), converted once.

    Row i = its nonzero features (1-based indices) + the bias node (index D+1, value 1, as `-B 1`)
    + a terminator (-1). A training problem for any subset of rows and any labels is a pointer
    array into this one buffer, so classes, costs and folds never copy or convert the data.
    """

    def __init__(self, x: np.ndarray):
        from liblinear.liblinearutil import feature_node

        x = np.ascontiguousarray(x, dtype=np.float64)
        n, d = x.shape
        node = np.dtype([("index", np.int32), ("value", np.float64)], align=True)
        if node.itemsize != ctypes.sizeof(feature_node):
            raise RuntimeError("unexpected LIBLINEAR feature_node layout")
        rows, cols = np.nonzero(x)
        nnz_per_row = np.bincount(rows, minlength=n)
        row_len = nnz_per_row + 2
        self.rowptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(row_len, out=self.rowptr[1:])
        space = np.empty(int(self.rowptr[-1]), dtype=node)
        pos = np.arange(rows.size, dtype=np.int64) + 2 * rows  # two extra nodes per earlier row
        space["index"][pos] = cols + 1
        space["value"][pos] = x[rows, cols]
        bias_pos = self.rowptr[1:] - 2
        space["index"][bias_pos] = d + 1
        space["value"][bias_pos] = 1.0
        space["index"][self.rowptr[1:] - 1] = -1
        space["value"][self.rowptr[1:] - 1] = 0.0
        self.space = space
        self.num_rows, self.dim = n, d
        self.base = space.ctypes.data

    def problem(self, rows: np.ndarray, targets: np.ndarray):
        """A LIBLINEAR `problem` over `rows` with labels `targets` (+1/-1), sharing the node buffer."""
        from liblinear.liblinearutil import feature_node, problem

        rows = np.asarray(rows, dtype=np.int64)
        prob = problem.__new__(problem)
        prob._addresses = (self.base + self.rowptr[rows] * ctypes.sizeof(feature_node)).astype(np.uint64)
        prob._y = np.ascontiguousarray(targets, dtype=np.float64)
        prob._keep = self  # the node buffer must outlive the problem
        prob.l = int(rows.size)
        prob.n = self.dim + 1
        prob.bias = 1.0
        prob.y = prob._y.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        prob.x = ctypes.cast(prob._addresses.ctypes.data, ctypes.POINTER(ctypes.POINTER(feature_node)))
        return prob


_LIBC = None


def _seed_c_rand(seed: int) -> None:
    """LIBLINEAR shuffles with rand(): seed it so every fit is reproducible."""
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or None)
        except OSError:
            _LIBC = False
    if _LIBC:
        _LIBC.srand(ctypes.c_uint(seed))


def svm_options(cost: float, solver: int = 1) -> str:
    """LIBLINEAR options. Solver 1 (dual) is sklearn LinearSVC(C=cost, loss='squared_hinge', dual=True,
    class_weight={1: 2, -1: 1}, tol=1e-4); solver 2 is LIBLINEAR's primal Newton method for the very
    same objective. The bias is the -B 1 node built into the data."""
    return f"-s {solver} -c {cost!r} -e {TOLERANCE!r} -w1 {POSITIVE_WEIGHT!r} -w-1 {NEGATIVE_WEIGHT!r} -q"


def fit_binary_svm(
    data: LiblinearData,
    rows: np.ndarray,
    targets: np.ndarray,
    cost: float,
    seed: int = 0,
    primal: bool = False,
    warm_start: np.ndarray | None = None,
) -> np.ndarray:
    """Train one binary SVM; returns w of length D+1 (last = bias) with w.x > 0 meaning class +1.

    `primal=True` uses LIBLINEAR's Newton solver (-s 2) on the same objective, started from
    `warm_start` (a w from this function, e.g. the solution at the previous, smaller C).
    """
    from liblinear.liblinearutil import liblinear, parameter, toPyModel

    if np.all(targets == targets[0]):
        # One class only (a fold of a class with < 3 positives); sklearn would refuse to fit.
        # A constant decision function ranks nothing, which is the honest answer.
        return np.zeros(data.dim + 1)
    prob = data.problem(rows, targets)
    param = parameter(svm_options(cost, 2 if primal else 1))
    if primal and warm_start is not None:
        # LIBLINEAR (>= 2.2) orders the labels {-1, +1} as [+1, -1], so its w already scores +1 positive
        init = np.ascontiguousarray(warm_start, dtype=np.float64)
        param.init_sol = init.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
    err = liblinear.check_parameter(prob, param)
    if err:
        raise RuntimeError(f"LIBLINEAR rejected the parameters: {err.decode() if isinstance(err, bytes) else err}")
    _seed_c_rand(seed + 1)
    model = toPyModel(liblinear.train(prob, param))
    if model.label[0] != 1:
        raise RuntimeError(f"unexpected LIBLINEAR label order {model.label[0]}, {model.label[1]}")
    return np.ctypeslib.as_array(model.w, (data.dim + 1,)).copy()


def decision_values(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """w . [x, 1], what LinearSVC.decision_function gives."""
    return x @ w[:-1] + w[-1]
