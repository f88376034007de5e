"""Snakemake script: write the synthetic CIFAR-format tarball and its .md5 file."""
import sys
from pathlib import Path

# The rule's log gets everything, including tracebacks.
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)  # noqa: F821

# Import this checkout's package, never another install: it is the code the gate rules watch.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1]))  # noqa: F821
from handbackprop import stage  # noqa: E402

with stage.console_errors(snakemake.rule, snakemake.log[0]):  # noqa: F821
    from handbackprop.data.synthetic import make_synthetic_tarball

    tarball = Path(snakemake.output.tarball)  # noqa: F821
    md5_out = Path(snakemake.output.md5)  # noqa: F821
    digest = make_synthetic_tarball(
        tarball,
        per_class_train=int(snakemake.params.per_class_train),  # noqa: F821
        per_class_test=int(snakemake.params.per_class_test),  # noqa: F821
        seed=int(snakemake.params.seed),  # noqa: F821
    )
    # make_synthetic_tarball writes <tarball>.md5; the rule may want it elsewhere.
    default_md5 = tarball.with_name(tarball.name + ".md5")
    if md5_out.resolve() != default_md5.resolve():
        from handbackprop.atomic import write_text
        write_text(md5_out, default_md5.read_text())
    print(f"{tarball}: md5 {digest}")
