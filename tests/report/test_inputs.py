"""The report takes the report rule's named inputs; a missing one is an error naming it."""
import pytest

from handbackprop.report.collect import collect
from handbackprop.report.inputs import Inputs, MissingInput


def test_a_name_the_rule_does_not_give_is_named(tmp_path):
    inp = Inputs({"audit": str(tmp_path / "a.json")})
    with pytest.raises(MissingInput, match="no input named 'searches'.*inputs: audit"):
        inp.many("searches")


def test_an_absent_file_names_its_input(tmp_path):
    inp = Inputs({"finals": [str(tmp_path / "x.json")]})
    with pytest.raises(MissingInput, match=r"input 'finals': .*x\.json does not exist"):
        inp.many("finals")


def test_optional_is_none_for_an_empty_input_and_the_file_otherwise(tmp_path):
    f = tmp_path / "ablation.json"
    f.write_text("{}")
    inp = Inputs({"ablation": [], "recipe": [str(f)]})
    assert inp.optional("ablation") is None and inp.optional("recipe") == f


def test_one_refuses_several_files(tmp_path):
    for n in ("a", "b"):
        (tmp_path / n).write_text("")
    with pytest.raises(MissingInput, match="'gradcheck' must be one file, got 2"):
        Inputs({"gradcheck": [str(tmp_path / "a"), str(tmp_path / "b")]}).one("gradcheck")


def test_collect_reads_no_path_the_rule_did_not_name(tmp_path):
    # A results folder with every file at its usual place is no help: without the named input,
    # collect fails naming it rather than rebuilding the path.
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "audit.json").write_text("{}")
    with pytest.raises(MissingInput, match="no input named 'audit'"):
        collect({}, {"search": {"models": []}}, tmp_path)
