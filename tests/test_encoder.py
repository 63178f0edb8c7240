import numpy as np
import pytest

from recagent.catalog import RecAgentError
from recagent.retrieval.encoder import TextEncoder


def test_embeddings_are_normalised_float32_and_semantic(encoder):
    vectors = encoder.encode(["a DSLR camera body", "a digital SLR camera", "dark roast coffee beans"])
    assert vectors.dtype == np.float32 and vectors.shape == (3, encoder.dimension)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    assert encoder.encode([]).shape == (0, encoder.dimension)


def test_version_names_weights_and_dtype():
    fp32 = TextEncoder(dtype="float32")
    bf16 = TextEncoder(dtype="bfloat16")
    assert fp32.version.endswith("-fp32") and bf16.version.endswith("-bf16")
    assert fp32.version.split("-")[0] == bf16.version.split("-")[0]
    a = fp32.encode(["a tripod with a ball head"])
    b = bf16.encode(["a tripod with a ball head"])
    assert float(a[0] @ b[0]) > 0.99  # bf16 is a faithful, faster twin of fp32


def test_bad_model_dir_and_dtype_are_clear_errors(tmp_path):
    with pytest.raises(RecAgentError, match="not a sentence-transformers model directory"):
        TextEncoder(tmp_path)
    with pytest.raises(ValueError, match="dtype"):
        TextEncoder(dtype="float8")


def test_token_count_includes_special_tokens(encoder):
    assert encoder.count_tokens("hello world") == 4  # [CLS] hello world [SEP]


def test_cached_encoding_encodes_each_text_once_and_forgets_the_oldest():
    enc = TextEncoder(cache_entries=2)
    texts = ["a tripod with a ball head", "dark roast coffee beans", "a tripod with a ball head"]
    first = enc.encode(texts, cache=True)
    assert (enc.cache_misses, enc.cache_hits) == (2, 1)  # the repeat inside one call is a hit
    np.testing.assert_allclose(first, enc.encode(texts), atol=1e-5)  # as without the cache
    again = enc.encode(texts[:2], cache=True)
    assert (enc.cache_misses, enc.cache_hits) == (2, 3)
    np.testing.assert_array_equal(again, first[:2])
    enc.encode(["a camera bag"], cache=True)  # a third text: the least recent one goes
    enc.encode(["a tripod with a ball head"], cache=True)
    assert enc.cache_misses == 4
    assert enc.encode([], cache=True).shape == (0, enc.dimension)
    with pytest.raises(ValueError, match="cache_entries"):
        TextEncoder(cache_entries=-1)
