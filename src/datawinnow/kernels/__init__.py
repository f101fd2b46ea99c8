"""Pairwise kernels for subset objectives (DELIFT): the utility kernel, sentence-embedding kernels,
k-NN graphs, similarity transforms, and the on-disk kernel store (cached by row block).

Every kernel here is returned *candidate-major*: stored row ``j`` is column ``j`` of the similarity
``s[i, j]`` (row ``i`` represented, column ``j`` candidate); pass ``transposed=True`` to the
objectives in :mod:`datawinnow.select.submodular`.
"""

from .embedding import embed_records, embedding_kernel, neighbours
from .knn import knn
from .similarity import cosine01, to_similarity
from .store import KernelStore, build_blocked
from .utility import UtilityKernel, utility_kernel, utility_pair_reference

__all__ = ["KernelStore", "UtilityKernel", "build_blocked", "cosine01", "embed_records", "embedding_kernel", "knn",
           "neighbours", "to_similarity", "utility_kernel", "utility_pair_reference"]
