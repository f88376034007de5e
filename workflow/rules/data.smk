# Data rules take the data code as input: editing it reruns preprocessing and all after it;
# the download and the synthetic tarball depend on their own module only (no 170 MB refetch).


rule make_synthetic:
    input:
        code=code_of("make_synthetic"),
    output:
        tarball=SYNTH_TARBALL,
        md5=SYNTH_MD5,
    log:
        f"{R}/logs/make_synthetic.log",
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        per_class_train=SYNTH["per_class_train"] if SYNTH else 0,
        per_class_test=SYNTH["per_class_test"] if SYNTH else 0,
        seed=SYNTH["seed"] if SYNTH else 0,
    script:
        "../scripts/make_synthetic.py"


rule download:
    input:
        unpack(download_inputs),
        code=code_of("download"),
    output:
        tarball=f"{R}/data/cifar-10-python.tar.gz",
        provenance=f"{R}/data/download.json",
    log:
        f"{R}/logs/download.log",
    benchmark:
        f"{R}/benchmarks/download.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=300,
        runtime=30,
    params:
        url=SYNTH_TARBALL if SYNTH else config["data"]["url"],
        md5="" if SYNTH else config["data"]["md5"],
        retries=config["data"]["retries"],
        timeout_s=config["data"]["timeout_s"],
    script:
        "../scripts/download.py"


# The final split keeps the 10,000 test images; the search split withholds them.
rule preprocess:
    input:
        tarball=rules.download.output.tarball,
        provenance=rules.download.output.provenance,
        code=code_of("preprocess"),
    output:
        split_files("final"),
        stats=f"{R}/data/final/stats.json",
    log:
        f"{R}/logs/preprocess_final.log",
    benchmark:
        f"{R}/benchmarks/preprocess_final.tsv"
    conda:
        "../../envs/data.yaml"
    threads: THREADS["data"]
    resources:
        mem_mb=1500,
        runtime=5,
    params:
        n_val=config["data"]["splits"]["final"]["n_val"],
        seed=config["data"]["splits"]["final"]["seed"],
        with_test=True,
    script:
        "../scripts/preprocess.py"


use rule preprocess as preprocess_search with:
    output:
        split_files("search"),
        stats=f"{R}/data/search/stats.json",
    log:
        f"{R}/logs/preprocess_search.log",
    benchmark:
        f"{R}/benchmarks/preprocess_search.tsv"
    params:
        n_val=config["data"]["splits"]["search"]["n_val"],
        seed=config["data"]["splits"]["search"]["seed"],
        with_test=False,
