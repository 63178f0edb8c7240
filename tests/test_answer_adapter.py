"""LoRA answer adapters (the explanation adapter's machinery) on a tiny real causal LM.

The model is a two-layer Qwen2 with random weights and a byte-level BPE tokenizer trained
here in milliseconds, with a chat template: small enough to train in seconds, and the same
classes, the same chat wrapping and the same peft code paths as the instruct model.
"""

from __future__ import annotations

import itertools
import json
from functools import cached_property
from pathlib import Path

import pytest

from recagent.llm.answer_adapter import (
    ADAPTER_DIR,
    ADAPTER_META,
    AdapterTrainConfig,
    Answer,
    read_adapter_meta,
    train_answer_adapter,
)
from recagent.llm.instruct import InstructLLM

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "Write one short sentence telling a shopper why a product suits them.",
    "Product: Trailhead Dome Tent. They bought: Summit Hiking Backpack. Shared: category Camping",
    "Trailhead Dome Tent is a tent to go with your Summit Hiking Backpack.",
    "Penmark Gel Pen is a fine gel pen like your Glidewrite pens.",
    "You are a helpful shopping assistant. Answer briefly. Sentence:",
]


def _tiny_checkpoint(folder: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS * 4, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(fast), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, eos_token_id=fast.eos_token_id, initializer_range=0.5,
                         pad_token_id=fast.pad_token_id, tie_word_embeddings=True)
    Qwen2ForCausalLM(config).save_pretrained(folder)
    return folder


class TinyChatLM(InstructLLM):
    """The instruct backend's code on the tiny checkpoint."""

    def __init__(self, checkpoint: Path, **kwargs) -> None:
        super().__init__(checkpoint.parent, dtype="float32", **kwargs)
        self._checkpoint = checkpoint

    @cached_property
    def checkpoint(self) -> Path:
        return self._checkpoint


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return _tiny_checkpoint(tmp_path_factory.mktemp("tiny-lm") / "tiny")


PROMPT = "Product: Trailhead Dome Tent. They bought: Summit Hiking Backpack. Sentence:"
START = "Trailhead Dome Tent"
ANSWER = "Trailhead Dome Tent is a tent to go with your Summit Hiking Backpack."


@pytest.fixture(scope="module")
def trained(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("adapter")
    llm = TinyChatLM(tiny_checkpoint)
    examples = [Answer(PROMPT, START, ANSWER)] * 4
    result = train_answer_adapter(
        llm, examples, examples[:1], out, show_progress=False, metadata={"dataset": "tiny"},
        config=AdapterTrainConfig(epochs=40, batch_size=4, lr=3e-2, rank=8, alpha=16, dropout=0.0))
    return llm, out, result


def test_training_lowers_the_answer_loss_and_saves_the_best_epoch(trained):
    _, out, result = trained
    meta = read_adapter_meta(out)
    losses = [h["valid_loss"] for h in result.history]
    assert losses[-1] < 0.5 * meta["valid_loss_base"]
    assert meta["best_valid_loss"] == round(min(losses), 4)
    assert meta["best_epoch"] == 1 + losses.index(min(losses))
    assert meta["dataset"] == "tiny" and meta["train_examples"] == 4
    assert (out / ADAPTER_DIR / "adapter_config.json").is_file()
    assert json.loads((out / ADAPTER_META).read_text())["base"] == "tiny"


def test_the_reloaded_adapter_writes_what_it_learned_and_only_when_named(trained, tiny_checkpoint):
    _, out, _ = trained
    tuned = TinyChatLM(tiny_checkpoint, adapters={"explainer": out / ADAPTER_DIR})
    base = TinyChatLM(tiny_checkpoint)
    assert tuned.adapters == {"explainer"}
    with_adapter = tuned.generate_batch([PROMPT], max_tokens=24, stop=["\n"], starts=[START],
                                        adapter="explainer")
    assert with_adapter == [ANSWER]
    # Off unless named: the same model decodes as the base model does, before and after.
    plain = base.generate_batch([PROMPT], max_tokens=24, stop=["\n"], starts=[START])
    assert plain != [ANSWER]
    assert tuned.generate_batch([PROMPT], max_tokens=24, stop=["\n"], starts=[START]) == plain
    assert tuned.generate(PROMPT, max_tokens=24) == base.generate(PROMPT, max_tokens=24)


def test_a_batch_with_the_adapter_does_not_reuse_the_base_models_kept_beginning(trained, tiny_checkpoint):
    _, out, _ = trained
    tuned = TinyChatLM(tiny_checkpoint, adapters={"explainer": out / ADAPTER_DIR})
    prompts = [PROMPT, PROMPT.replace("Summit", "Ridge")]
    base_first = tuned.generate_batch(prompts, max_tokens=24, stop=["\n"], starts=[START, START])
    adapted = tuned.generate_batch(prompts, max_tokens=24, stop=["\n"], starts=[START, START],
                                   adapter="explainer")
    assert adapted[0] == ANSWER
    fresh = TinyChatLM(tiny_checkpoint, adapters={"explainer": out / ADAPTER_DIR})
    assert fresh.generate_batch(prompts, max_tokens=24, stop=["\n"], starts=[START, START],
                                adapter="explainer") == adapted
    assert tuned.generate_batch(prompts, max_tokens=24, stop=["\n"], starts=[START, START]) == base_first


def test_the_output_head_reads_a_contiguous_input_in_both_copies(trained, tiny_checkpoint):
    # A strided input to a frozen head (the merged copy's) makes torch copy the head's weight
    # once per row: a 5-row prefill on Amazon took 3.6x as long (see _contiguous_head_input).
    _, out, _ = trained
    tuned = TinyChatLM(tiny_checkpoint, adapters={"explainer": out / ADAPTER_DIR})
    # So does the last position of a single row, which counts as contiguous but keeps the
    # row's strides (0.47 s against 0.015 s for the head of the 0.5B model).
    import torch

    seen: list[tuple[bool, bool]] = []
    for model in (tuned.model, tuned._model_for("explainer")):
        head = model.get_output_embeddings()
        head.register_forward_hook(lambda m, args, _out: seen.append(
            (m.weight.requires_grad, args[0].stride() == torch.empty(args[0].shape).stride())))
    prompts = [PROMPT, PROMPT.replace("Summit", "Ridge Top")]
    for adapter in (None, "explainer"):
        tuned.generate_batch(prompts, max_tokens=4, stop=["\n"], starts=[START, START], adapter=adapter)
        tuned.generate_batch(prompts[:1], max_tokens=4, stop=["\n"], starts=[START], adapter=adapter)
    assert (False, True) in seen and (True, True) in seen  # the frozen copy and the base model
    assert all(standard for _, standard in seen)


def test_an_unknown_adapter_or_an_int8_model_with_adapters_is_refused(trained, tiny_checkpoint):
    _, out, _ = trained
    with pytest.raises(ValueError, match="no LoRA adapter 'other'"):
        TinyChatLM(tiny_checkpoint).generate_batch([PROMPT], starts=[START], adapter="other")
    with pytest.raises(ValueError, match="int8"):
        InstructLLM(tiny_checkpoint.parent, dtype="int8", adapters={"explainer": out / ADAPTER_DIR})


def test_an_answer_that_does_not_open_with_its_start_is_refused(tiny_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="does not open with its start"):
        train_answer_adapter(TinyChatLM(tiny_checkpoint), [Answer(PROMPT, START, "A tent.")], [],
                             tmp_path, config=AdapterTrainConfig(epochs=1))


def test_sampled_answers_open_with_the_start_and_stop_at_the_line(tiny_checkpoint):
    llm = TinyChatLM(tiny_checkpoint)
    other, other_start = PROMPT.replace("Trailhead Dome Tent", "Ridge Lantern"), "Ridge Lantern"
    kwargs = {"starts": [START, other_start], "max_tokens": 12, "stop": ["\n"], "seed": 1}
    draws = llm.sample_batch([PROMPT, other], 3, **kwargs)
    assert [len(d) for d in draws] == [3, 3]
    assert all(d.startswith(START) and "\n" not in d for d in draws[0])
    assert all(d.startswith(other_start) for d in draws[1])
    assert len(set(draws[0])) > 1  # draws, not one greedy answer thrice
    assert draws == llm.sample_batch([PROMPT, other], 3, **kwargs)
    assert llm.sample_batch([PROMPT], 0, starts=[START]) == [[]]
    with pytest.raises(ValueError, match="temperature"):
        llm.sample_batch([PROMPT], 2, temperature=0.0)


def test_draws_stop_once_one_passes_or_at_the_deadline(tiny_checkpoint):
    import time

    llm = TinyChatLM(tiny_checkpoint)
    other, other_start = PROMPT.replace("Trailhead Dome Tent", "Ridge Lantern"), "Ridge Lantern"
    kwargs = {"starts": [START, other_start], "max_tokens": 12, "stop": ["\n"], "seed": 1}
    everything = llm.sample_batch([PROMPT, other], 3, **kwargs)
    seen = []

    def first_of_prompt_0(i: int, answer: str) -> bool:
        seen.append((i, answer))
        return i == 0

    draws = llm.sample_batch([PROMPT, other], 3, until=first_of_prompt_0, **kwargs)
    assert len(draws[0]) == 1 and draws[0][0] in everything[0]  # its other rows were dropped
    assert sorted(draws[1]) == sorted(everything[1])  # none passed: all three are drawn
    assert (0, draws[0][0]) in seen
    # At the deadline decoding stops, and the draws not yet ended end where they are.
    late = llm.sample_batch([PROMPT, other], 3, deadline=time.monotonic(), **kwargs)
    assert [len(d) for d in late] == [3, 3]
    for cut, whole in zip(late, everything, strict=True):
        assert all(any(w.startswith(d) and len(w) > len(d) for w in whole) for d in cut)


def test_a_failed_answer_is_drawn_again_within_the_batch(tiny_checkpoint, monkeypatch):
    """draw_batch: each prompt's greedy answer first; one that fails is drawn again at once, in
    its own row or in a row another prompt has done with (its prompt's positions copied there).
    Sampled from the top token only, every redraw must repeat the greedy answer exactly: the
    old answer's positions are hidden, and the new one starts at the prompt's end."""
    import time

    from transformers.cache_utils import DynamicCache

    copied = []
    select = DynamicCache.batch_select_indices
    monkeypatch.setattr(DynamicCache, "batch_select_indices",
                        lambda cache, indices: (copied.append(indices.tolist()), select(cache, indices))[1])
    llm = TinyChatLM(tiny_checkpoint)
    prompts = [PROMPT, PROMPT.replace("Trailhead Dome Tent", "Ridge Lantern"),
               PROMPT.replace("Trailhead Dome Tent", "Canyon Camp Stove")]
    kwargs = {"starts": [START, "Ridge Lantern", "Canyon Camp Stove"], "max_tokens": 12, "stop": ["\n"]}
    greedy = llm.generate_batch(prompts, **kwargs)
    seen = []

    def only_prompt_1_passes(i: int, answer: str) -> bool:
        seen.append(i)
        return i == 1

    draws = llm.draw_batch(prompts, 3, until=only_prompt_1_passes, top_p=1e-9, **kwargs)
    assert draws[1] == [greedy[1]]  # passed at once: no redraw
    assert draws[0] == [greedy[0]] * 4 and draws[2] == [greedy[2]] * 4  # greedy, then 3 redraws
    assert sorted(seen) == [0] * 4 + [1] + [2] * 4
    assert copied and all(sorted(set(c)) != list(range(3)) for c in copied)  # prompt 1's row reused
    assert llm.draw_batch(prompts, 0, until=only_prompt_1_passes, **kwargs) == [[g] for g in greedy]
    # By the deadline every answer ends where it is (here after its first token), greedy too.
    cut = llm.draw_batch(prompts, 3, until=only_prompt_1_passes, deadline=time.monotonic(), **kwargs)
    assert all(len(d) == 1 and g.startswith(d[0]) and len(d[0]) < len(g)
               for d, g in zip(cut, greedy, strict=True))


def test_the_explainer_is_loaded_only_where_validation_chose_it(tmp_path):
    from recagent.app.llm_backend import explainer_adapters
    from recagent.app.settings import Settings
    from recagent.llm.answer_adapter import update_adapter_meta
    from recagent.llm.instruct_model import INSTRUCT_CHECKPOINT

    folder = tmp_path / "shop-explainer"
    settings = Settings.from_env().override(home=tmp_path, llm="instruct")
    assert explainer_adapters(settings, folder) == {}  # never trained
    folder.mkdir()
    update_adapter_meta(folder, {"base": INSTRUCT_CHECKPOINT, "use": False})
    assert explainer_adapters(settings, folder) == {}  # validation said no
    update_adapter_meta(folder, {"use": True})
    assert explainer_adapters(settings, folder) == {"explainer": folder / ADAPTER_DIR}
    assert explainer_adapters(settings.override(llm="vllm"), folder) == {"explainer": folder / ADAPTER_DIR}
    assert explainer_adapters(settings.override(llm="none"), folder) == {}
    assert explainer_adapters(settings.override(explainer=False), folder) == {}
    assert explainer_adapters(settings.override(llm_dtype="int8"), folder) == {}
    update_adapter_meta(folder, {"base": "gemma-3-270m"})  # trained on another model
    assert explainer_adapters(settings, folder) == {}



def test_the_reader_is_loaded_only_where_validation_chose_it_and_only_embedded(tmp_path):
    from recagent.app.llm_backend import READER_DIR, reader_adapters
    from recagent.app.settings import Settings
    from recagent.llm.answer_adapter import update_adapter_meta
    from recagent.llm.instruct_model import INSTRUCT_CHECKPOINT

    folder = tmp_path / "models" / READER_DIR
    settings = Settings.from_env().override(home=tmp_path, llm="instruct")
    assert reader_adapters(settings) == {}  # never trained
    folder.mkdir(parents=True)
    update_adapter_meta(folder, {"base": INSTRUCT_CHECKPOINT, "use": False})
    assert reader_adapters(settings) == {}  # validation said no
    update_adapter_meta(folder, {"use": True})
    assert reader_adapters(settings) == {"reader": folder / ADAPTER_DIR}
    assert reader_adapters(settings.override(llm="vllm")) == {}  # the server reads without it
    assert reader_adapters(settings.override(reader=False)) == {}
    assert reader_adapters(settings.override(llm_dtype="int8")) == {}
    update_adapter_meta(folder, {"base": "gemma-3-270m"})
    assert reader_adapters(settings) == {}

# -- JSON answers (the request-reading adapter): the prompt's head is read by the model alone

JSON_PROMPT = "Read a shopper's message.\nExamples: tent -> {}.\nMessage: \"a tent from Summit\""
JSON_SCHEMA = {"type": "object", "properties": {"product": {"type": "string", "maxLength": 12},
                                                "brands": {"type": "array", "items": {"enum": ["Summit", "Ridge"]},
                                                           "maxItems": 2}},
               "required": ["product", "brands"], "additionalProperties": False}
JSON_ANSWER = {"product": "tent", "brands": ["Summit"]}


def test_a_json_answers_head_is_all_of_its_prompt_but_the_last_line(tiny_checkpoint):
    llm = TinyChatLM(tiny_checkpoint)
    head = llm.json_head(JSON_PROMPT)
    ids = llm.json_ids(JSON_PROMPT)
    assert 0 < head < len(ids)
    text = llm.tokenizer.decode(ids[:head])
    assert text.endswith(("Examples: tent -> {}.\n", "Examples: tent -> {}."))
    assert "Message" not in text
    assert llm.json_head("one line only") == 0


def test_the_loss_from_a_heads_cache_is_the_loss_of_the_whole_row(tiny_checkpoint):
    # With the adapter off, reading the head into a cache first must change nothing.
    import torch
    from peft import LoraConfig, get_peft_model

    from recagent.llm.answer_adapter import _batch_loss, _example_ids, _Heads

    llm = TinyChatLM(tiny_checkpoint)
    examples = [Answer(JSON_PROMPT, "", json.dumps(JSON_ANSWER), as_json=True),
                Answer(JSON_PROMPT.replace("Summit", "Ridge Summit"), "", json.dumps({"product": "tent",
                       "brands": ["Ridge"]}), as_json=True)]
    rows = [_example_ids(llm, ex) for ex in examples]
    assert all(head > 0 for _, _, head in rows)
    peft_model = get_peft_model(llm.model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad(), peft_model.disable_adapter():
        from_head = float(_batch_loss(llm, rows, _Heads(llm, peft_model)))
        whole = float(_batch_loss(llm, [(ids, begin, 0) for ids, begin, _ in rows]))
    assert from_head == pytest.approx(whole, rel=1e-4)


@pytest.fixture(scope="module")
def json_trained(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("json-adapter")
    examples = [Answer(JSON_PROMPT, "", json.dumps(JSON_ANSWER), as_json=True)] * 4
    train_answer_adapter(
        TinyChatLM(tiny_checkpoint), examples, examples[:1], out, show_progress=False,
        config=AdapterTrainConfig(epochs=40, batch_size=4, lr=3e-2, rank=8, alpha=16, dropout=0.0))
    return out


def test_a_json_adapter_decodes_what_it_learned_only_when_named(json_trained, tiny_checkpoint):
    tuned = TinyChatLM(tiny_checkpoint, adapters={"reader": json_trained / ADAPTER_DIR})
    base = TinyChatLM(tiny_checkpoint)
    plain = base.generate_json(JSON_PROMPT, JSON_SCHEMA, max_tokens=120)
    assert tuned.generate_json(JSON_PROMPT, JSON_SCHEMA, max_tokens=120, adapter="reader") == JSON_ANSWER
    assert plain != JSON_ANSWER
    assert tuned.generate_json(JSON_PROMPT, JSON_SCHEMA, max_tokens=120) == plain
    # Again, from the kept cache of the head (read by the model alone), and after another
    # message with the same head: the same answers as a fresh copy gives.
    other = JSON_PROMPT.replace("a tent from Summit", "a Ridge tent")
    again = [tuned.generate_json(p, JSON_SCHEMA, max_tokens=120, adapter="reader")
             for p in (JSON_PROMPT, other, JSON_PROMPT)]
    fresh = TinyChatLM(tiny_checkpoint, adapters={"reader": json_trained / ADAPTER_DIR})
    assert again == [JSON_ANSWER, fresh.generate_json(other, JSON_SCHEMA, max_tokens=120, adapter="reader"),
                     JSON_ANSWER]


def test_a_json_adapter_reads_the_head_with_the_model_alone(json_trained, tiny_checkpoint):
    import torch

    tuned = TinyChatLM(tiny_checkpoint, adapters={"reader": json_trained / ADAPTER_DIR})
    ids, head = tuned.json_ids(JSON_PROMPT), tuned.json_head(JSON_PROMPT)
    decoder = tuned.decoder_for("reader")
    with torch.no_grad():
        got = decoder._prefill(ids, head).logits[0, -1]
        base_head = tuned.model(input_ids=torch.tensor([ids[:head]]), use_cache=True)
        want = tuned._model_for("reader")(input_ids=torch.tensor([ids[head:]]), cache=base_head.cache,
                                          use_cache=True).logits[0, -1]
        all_adapted = tuned._model_for("reader")(input_ids=torch.tensor([ids])).logits[0, -1]
    assert torch.allclose(got, want, atol=1e-4)
    assert not torch.allclose(got, all_adapted, atol=1e-4)


def test_kept_epochs_are_each_epochs_own_adapter(tiny_checkpoint, tmp_path):
    from safetensors.torch import load_file

    from recagent.llm.answer_adapter import epoch_dir

    examples = [Answer(PROMPT, START, ANSWER)] * 4
    result = train_answer_adapter(
        TinyChatLM(tiny_checkpoint), examples, examples[:1], tmp_path, show_progress=False,
        keep_epochs=True,
        config=AdapterTrainConfig(epochs=3, batch_size=4, lr=3e-2, rank=8, alpha=16, dropout=0.0))
    weights = [load_file(epoch_dir(tmp_path, e) / "adapter_model.safetensors") for e in (1, 2, 3)]
    best = load_file(tmp_path / ADAPTER_DIR / "adapter_model.safetensors")
    assert not epoch_dir(tmp_path, 4).exists()
    for a, b in itertools.pairwise(weights):  # trained on between them
        assert any(not a[k].equal(b[k]) for k in a)
    chosen = weights[result.best_epoch - 1]  # the loss's choice is one of them
    assert all(chosen[k].equal(best[k]) for k in best)
