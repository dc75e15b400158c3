"""tiny-agent's training code: deterministic corpus, assistant-only loss mask, a few steps that learn, export."""

from __future__ import annotations

import json
import random

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from tiny_shape import SMALL  # noqa: E402

from optiq_runtime import embedded_base_path  # noqa: E402
from training import corpus  # noqa: E402
from training.arch import TinyAgent  # noqa: E402
from training.batches import Encoder, pack  # noqa: E402
from training.export import checkpoint_tensors, config_json  # noqa: E402
from training.template import render  # noqa: E402
from training.train import TrainConfig, losses, make_optimizer  # noqa: E402


@pytest.fixture(scope="module")
def encoder():
    return Encoder(tokenizers.Tokenizer.from_file(str(embedded_base_path() / "tokenizer.json")))


def test_corpus_is_deterministic():
    first = [corpus.training_chat(random.Random("t:1"), 2) for _ in range(3)]
    again = [corpus.training_chat(random.Random("t:1"), 2) for _ in range(3)]
    assert [json.dumps(c.messages) for c in first] == [json.dumps(c.messages) for c in again]


def test_the_shipped_data_files_are_what_the_generator_writes(tmp_path):
    # Guards the held-out seeds: a corpus change that moved them would silently re-score the model.
    from optiq_runtime.calibration import DATA_DIR
    from training.datasets import write_datasets

    write_datasets(tmp_path)
    for name in ("calibration.jsonl", "heldout.jsonl", "eval_suite.jsonl"):
        assert (tmp_path / name).read_bytes() == (DATA_DIR / name).read_bytes(), name


def test_the_acceptance_prompt_is_in_the_corpus():
    rng = random.Random(0)
    texts = [render(c.messages, c.tools) for c in (corpus.agent_chat(rng) for _ in range(400))]
    assert any("What is" in t and "? Use Python." in t and "<parameter=code>\nprint(" in t for t in texts)


def test_loss_mask_covers_exactly_the_assistant_replies(encoder):
    chat = corpus.Chat(
        "t",
        [
            corpus.user("What is 2 * 3? Use Python."),
            corpus.assistant_calls(corpus.call("run_python", code="print(2 * 3)")),
            corpus.tool_result("6"),
            corpus.assistant("2 * 3 = 6."),
        ],
    )
    ids, mask = encoder.encode(chat)
    trained = encoder.tokenizer.decode([t for t, m in zip(ids, mask) if m], skip_special_tokens=False)
    assert trained == (
        "<tool_call>\n<function=run_python>\n<parameter=code>\nprint(2 * 3)\n</parameter>\n"
        "</function>\n</tool_call><|im_end|>2 * 3 = 6.<|im_end|>"
    )


def test_copy_weight_falls_on_argument_values_and_echoed_results(encoder):
    chat = corpus.Chat(
        "t",
        [
            corpus.user("What does memo.txt say?"),
            corpus.assistant_calls(corpus.call("read_file", path="memo.txt")),
            corpus.tool_result("Call the bank"),
            corpus.assistant("It says: Call the bank."),
        ],
    )
    weighted = Encoder(encoder.tokenizer, copy_weight=3.0)
    ids, mask = weighted.encode(chat)
    plain_ids, plain_mask = encoder.encode(chat)
    assert ids == plain_ids and [m > 0 for m in mask] == [m > 0 for m in plain_mask]
    copied = encoder.tokenizer.decode([t for t, m in zip(ids, mask) if m == 3.0])
    # the path's tokens, and the answer's words that the tool result holds ("It says:" and "." are not copies)
    assert copied.replace(" ", "") == "memo.txtCallthebank"
    assert set(mask) == {0, 1, 3.0}


def test_copy_weight_weighs_the_next_token_loss():
    model = TinyAgent(SMALL, seed=0)
    ids = torch.randint(0, SMALL.vocab_size, (1, 12))
    plain = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0]], dtype=torch.float32)
    weighted = plain.clone()
    weighted[0, 5:8] = 4.0
    with torch.no_grad():
        main_plain, mtp_plain = losses(model, ids, plain)
        main_weighted, mtp_weighted = losses(model, ids, weighted)
    assert torch.equal(mtp_plain, mtp_weighted)  # the MTP loss weighs every reply token alike
    assert not torch.isclose(main_plain, main_weighted)


def test_values_tokenize_the_same_in_request_and_call(encoder):
    tok = encoder.tokenizer
    request = tok.encode("Read `notes/kelomi_42.txt` please").ids
    call = tok.encode("<parameter=path>\nnotes/kelomi_42.txt\n</parameter>").ids
    value = tok.encode("notes/kelomi_42.txt").ids
    as_text = lambda ids: ",".join(map(str, ids))  # noqa: E731
    assert as_text(value) in as_text(request) and as_text(value) in as_text(call)


def test_a_bare_name_after_a_space_is_a_space_and_the_values_tokens(encoder):
    # Issue #20: `memo.txt` said after a space was `Ġmem o . txt` and in a call `m emo . txt`, a
    # respelling the model garbled (`mo.txt`); the shipped tokenizer has no merge joining a space to a letter.
    tok = encoder.tokenizer
    space = tok.token_to_id("Ġ")
    for name in ("memo.txt", "away.txt", "info.txt", "colors.txt", "plans/week.md"):
        request = tok.encode(f"What's written in {name}?").ids
        value = tok.encode(name).ids
        as_text = lambda ids: "," + ",".join(map(str, ids)) + ","  # noqa: E731
        assert as_text([space, *value]) in as_text(request), name


def test_without_space_word_merges_keeps_every_id_and_splits_the_space_off():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    from training.tokenizer import without_space_word_merges

    vocab = {t: i for i, t in enumerate(["Ġ", "m", "e", "o", "'", "Ġm", "em", "emo", "Ġmem", "Ġ'"])}
    merges = [("e", "m"), ("Ġ", "m"), ("em", "o"), ("Ġm", "em"), ("Ġ", "'")]
    spaced = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    spaced.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    spaced.decoder = decoders.ByteLevel()
    assert spaced.encode(" memo").tokens == ["Ġm", "emo"]  # not "Ġ" + the tokens of "memo"
    split = without_space_word_merges(spaced)
    assert split.get_vocab() == spaced.get_vocab()
    assert split.encode(" memo").tokens == ["Ġ", "m", "emo"] and split.encode("memo").tokens == ["m", "emo"]
    assert split.encode(" '").tokens == ["Ġ'"]  # a space before punctuation keeps its merge
    assert split.decode(split.encode(" memo").ids) == " memo"


@pytest.mark.slow
def test_a_tokenizer_trained_from_scratch_never_joins_a_space_to_a_letter():
    import json

    from training.tokenizer import train_tokenizer

    merges = json.loads(train_tokenizer(0, samples=1500, vocab_size=800).to_str())["model"]["merges"]
    joined = ["".join(m if isinstance(m, list) else m.split(" ")) for m in merges]
    assert any(j.startswith("Ġ") for j in joined)  # space + punctuation merges remain
    assert not [j for j in joined if j.startswith("Ġ") and j[1:2].isalpha()]


@pytest.mark.slow
def test_a_few_steps_lower_the_loss(encoder):
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = TinyAgent(SMALL, seed=0)
    opt = make_optimizer(model, TrainConfig(lr=1e-2))
    ids, mask = pack(encoder, random.Random(0), 1, rows=1, seq_len=256)
    first = None
    for _ in range(8):
        main, mtp = losses(model, ids, mask)
        opt.zero_grad()
        (main + 0.3 * mtp).backward()
        opt.step()
        first = first if first is not None else main.item()
    torch.set_num_threads(threads)
    assert main.item() < first - 1.0


def test_export_uses_qwen35_names_and_offsets():
    model = TinyAgent(SMALL, seed=0)
    tensors = checkpoint_tensors(model)
    assert "model.language_model.embed_tokens.weight" in tensors and "lm_head.weight" not in tensors
    assert sum(k.startswith("mtp.") for k in tensors) == 15
    # Qwen3.5 norms are offsets (zero at init); the gated DeltaNet norm is a plain scale (one at init).
    assert float(tensors["model.language_model.norm.weight"].float().abs().max()) == 0.0
    assert float(tensors["model.language_model.layers.0.linear_attn.norm.weight"].float().min()) == 1.0
    assert config_json(SMALL)["text_config"]["layer_types"][3] == "full_attention"
