"""IOB reading: real files round-trip through spans, malformed input fails with file:line."""
from pathlib import Path

import pytest
from spacy.tokens import DocBin
from spacy.vocab import Vocab
from typer.testing import CliRunner

from spacy_msnr.cli import app
from spacy_msnr.corpus.iob import IOBFormatError, doc_to_iob, iob_to_docs, read_iob


@pytest.mark.parametrize(
    "relpath",
    # slices of the real files (tests/fixtures); conll2003 has runs of blank lines between documents
    ["blurb/NCBI-disease-IOB/test.tsv", "blurb/BC5CDR-IOB/devel.tsv", "crossner/politics/train.txt", "crossner/conll2003/train.txt"],
)
def test_real_files_round_trip(data_dir, relpath):
    path = data_dir / relpath
    sentences = read_iob(path)
    docs = iob_to_docs(path, Vocab())
    assert len(docs) == len(sentences)
    raw_b = sum("\tB-" in line for line in path.open(encoding="utf8"))
    assert sum(len(doc.ents) for doc in docs) == raw_b
    for doc, sentence in zip(docs, sentences):
        assert [t.text for t in doc] == sentence.words
        assert doc_to_iob(doc) == sentence.tags


def test_ncbi_counts_match_the_fixture_readme(data_dir):
    """Sentences / tokens / mentions of the NCBI-disease training slice, as tests/fixtures/README.md
    states them and as a plain reading of the file's lines counts them."""
    path = data_dir / "blurb/NCBI-disease-IOB/train.tsv"
    docs = iob_to_docs(path, Vocab())
    lines = path.read_text(encoding="utf8").split("\n")
    starts = sum(1 for i, line in enumerate(lines) if line and (i == 0 or not lines[i - 1]))
    raw = (starts, sum(1 for line in lines if line), sum(1 for line in lines if line.split("\t")[-1].startswith("B-")))
    assert (len(docs), sum(len(d) for d in docs), sum(len(d.ents) for d in docs)) == raw == (300, 7260, 290)


def test_n_sents_groups_sentences(data_dir):
    path = data_dir / "blurb/NCBI-disease-IOB/devel.tsv"
    single = iob_to_docs(path, Vocab())
    grouped = iob_to_docs(path, Vocab(), n_sents=10)
    assert len(grouped) == -(-len(single) // 10)
    assert [e.text for e in grouped[0].ents] == [e.text for d in single[:10] for e in d.ents]
    assert len(list(grouped[0].sents)) == 10


def write(tmp_path: Path, content, name="bad.tsv") -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf8"))
    return path


@pytest.mark.parametrize(
    "content,line,problem",
    [
        ("Aspirin\tO\ncauses\tO\nasthma\tI-Disease\n", 3, "I-Disease follows O"),
        ("Aspirin\tB-Chemical\ncauses\tI-Disease\n", 2, "I-Disease follows B-Chemical"),
        ("Aspirin\tO\n\nasthma\tI-Disease\n", 3, "I-Disease follows O"),
        ("Aspirin\tO\ncauses O\n", 2, "no tab"),
        ("Aspirin\tO\nasthma\tS-Disease\n", 2, "not IOB2"),
        ("Aspirin\tO\nasthma\tDisease\n", 2, "not IOB2"),
        ("", None, "no tokens"),
        ("\n\n  \n", None, "no tokens"),
        (b"Aspirin\tO\nasthm\xe4\tB-Disease\n", 2, "not UTF-8"),
    ],
)
def test_malformed_input_names_file_and_line(tmp_path, content, line, problem):
    path = write(tmp_path, content)
    with pytest.raises(IOBFormatError) as info:
        read_iob(path)
    assert info.value.line == line
    assert problem in str(info.value)
    assert str(path) in str(info.value)


def test_unknown_label(tmp_path):
    path = write(tmp_path, "Aspirin\tB-Chemical\ncauses\tO\nasthma\tB-Disease\n")
    with pytest.raises(IOBFormatError, match=r"bad.tsv:3: unknown label 'Disease'"):
        read_iob(path, labels=["Chemical"])
    assert len(read_iob(path, labels=["Chemical", "Disease"])[0].words) == 3


def test_convert_cli_writes_docbin_and_keeps_old_output_on_error(tmp_path, data_dir):
    runner = CliRunner()
    out = tmp_path / "out.spacy"
    result = runner.invoke(app, ["convert", str(data_dir / "crossner/ai/train.txt"), str(out)])
    assert result.exit_code == 0, result.output
    docs = list(DocBin().from_disk(out).get_docs(Vocab()))
    assert len(docs) == 60 and sum(len(d.ents) for d in docs) > 60  # the fixture keeps 60 sentences
    before = out.read_bytes()
    bad = write(tmp_path, "Aspirin\tO\nasthma\tI-Disease\n")
    result = runner.invoke(app, ["convert", str(bad), str(out)])
    assert result.exit_code == 1
    assert f"{bad}:2" in result.output
    assert out.read_bytes() == before
