"""Cosine k-nearest-neighbour search without an N x N matrix: exact blocked top-k, faiss when installed."""

from middo_core.knn.search import KnnResult, knn_search, nearest_in, normalize, topk_cosine

__all__ = ["KnnResult", "knn_search", "nearest_in", "normalize", "topk_cosine"]
