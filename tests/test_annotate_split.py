"""Long texts are split on paragraph, sentence and word boundaries, never losing a character."""
import pytest

from spacy_msnr.annotate.split import split_text


def joined(pieces):
    return "".join(p for _, p in pieces)


def test_short_text_is_one_piece():
    assert split_text("Short text.", 100) == [(0, "Short text.")]
    assert split_text("", 5) == [(0, "")]


def test_paragraph_boundary_is_preferred_over_sentences():
    text = "First one. Second one.\n\nThird one. Fourth."
    # the blank line ends at 24, within the 30-character window; sentence ends come later
    assert split_text(text, 30) == [(0, "First one. Second one.\n\n"), (24, "Third one. Fourth.")]


def test_sentence_boundaries_when_no_paragraph_fits():
    text = "Alpha beta. Gamma delta. Epsilon zeta."
    pieces = split_text(text, 26)
    assert pieces == [(0, "Alpha beta. Gamma delta. "), (25, "Epsilon zeta.")]


def test_word_boundary_then_hard_cut_only_inside_very_long_words():
    assert split_text("aaaa bbbb cccc", 8) == [(0, "aaaa "), (5, "bbbb "), (10, "cccc")]
    assert split_text("abcdefghij", 4) == [(0, "abcd"), (4, "efgh"), (8, "ij")]


@pytest.mark.parametrize("max_length", [1, 7, 40, 120])
def test_pieces_cover_the_text_with_their_offsets(max_length):
    text = "Mutations in BRCA1 cause breast cancer.\n\nThe APC gene (adenomatous polyposis coli) is mutated! Is it? Yes.  End"
    pieces = split_text(text, max_length)
    assert joined(pieces) == text
    assert all(len(p) <= max_length for _, p in pieces)
    assert all(text[o : o + len(p)] == p for o, p in pieces)


def test_rejects_a_bad_limit():
    with pytest.raises(ValueError, match="max_length"):
        split_text("text", 0)
