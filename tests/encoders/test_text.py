"""The English/Chinese tokenizer and the vocabulary."""

from __future__ import annotations

import json
import re
from pathlib import Path

from encoders.text import PAD, PAD_ID, UNK, UNK_ID, Vocabulary, tokenize

CJK = re.compile(r"[\u4e00-\u9fff]")


def test_latin_text_is_lower_cased_and_split_on_non_alphanumerics():
    assert tokenize("COVID-19 cases: Café owners' U.S. plans_2020!") == [
        "covid", "19", "cases", "café", "owners", "u", "s", "plans", "2020"]


def test_chinese_runs_are_segmented_into_words():
    tokens = tokenize("2018年去俄罗斯看世界杯得花多少钱？")
    assert "俄罗斯" in tokens and "世界杯" in tokens
    assert "2018" in tokens
    assert "？" not in "".join(tokens)


def test_mixed_text_never_glues_latin_to_chinese():
    tokens = tokenize("苹果发布iPhone15新品，售价5999元")
    assert "iphone15" in tokens and "5999" in tokens
    assert all(not (CJK.search(t) and re.search(r"[a-z0-9]", t)) for t in tokens)


def test_nothing_to_tokenize_gives_no_tokens():
    assert tokenize(None) == tokenize("") == tokenize("  ！？…—— ") == []


def test_real_toutiao_titles_become_words_not_characters(shared_data: Path):
    with (shared_data / "tnews" / "tnews_train.jsonl").open(encoding="utf-8") as fh:
        titles = [json.loads(line)["title"] for line, _ in zip(fh, range(300))]
    token_lists = [tokenize(t) for t in titles]
    assert all(token_lists)
    chinese = [t for tokens in token_lists for t in tokens if CJK.search(t)]
    assert sum(len(t) > 1 for t in chinese) > 0.5 * len(chinese)


def test_vocabulary_keeps_frequent_words_and_reserves_pad_and_unk():
    token_lists = [["b", "a", "c"], ["a", "b"], ["a", "d"], ["e"]]
    vocab = Vocabulary.build(token_lists, min_count=2, max_size=10)
    assert vocab.words == [PAD, UNK, "a", "b"]  # by count, "c", "d", "e" seen once
    assert (vocab.id_of[PAD], vocab.id_of[UNK]) == (PAD_ID, UNK_ID) == (0, 1)
    assert Vocabulary.build(token_lists, min_count=1, max_size=3).words == [PAD, UNK, "a", "b", "c"]


def test_ids_map_unknown_words_to_unk_and_truncate():
    vocab = Vocabulary(["apple", "pie"])
    assert vocab.ids(["apple", "crumble", "pie", "apple"], max_tokens=3) == [2, UNK_ID, 3]
    assert vocab.ids([], max_tokens=3) == []


def test_vocabulary_round_trips_through_json():
    vocab = Vocabulary.build([tokenize("世界杯 World Cup"), tokenize("world cup 世界杯")], min_count=2)
    again = Vocabulary.from_json(json.loads(json.dumps(vocab.to_json())))
    assert again.words == vocab.words and len(again) == len(vocab) == 5
