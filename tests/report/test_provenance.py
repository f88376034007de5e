"""The report's provenance: the config as the run saw it, whatever mapping types Snakemake used."""
from collections import OrderedDict

import yaml

from handbackprop.report.provenance import config_text


def test_a_config_with_ordered_mappings_in_lists_is_dumped_as_plain_yaml():
    """Snakemake reads `candidates: [{name: a, dropout: 0.4}]` from a --configfile into
    OrderedDicts; yaml.safe_dump refused them and the report failed after the whole study."""
    config = {"results": "results", "bonus": OrderedDict(recipe=OrderedDict(
        candidates=[OrderedDict(name="dropout_0.3", dropout=0.4)], seeds=(1, 2)))}
    text = config_text(config)
    assert yaml.safe_load(text) == {"results": "results", "bonus": {"recipe": {
        "candidates": [{"name": "dropout_0.3", "dropout": 0.4}], "seeds": [1, 2]}}}
    assert text.index("results") < text.index("bonus")  # the config's own order is kept
