rule make_synthetic:
    output:
        tarball=SYNTH_TARBALL,
        md5=SYNTH_MD5,
    params:
        per_class_train=SYNTH["per_class_train"] if SYNTH else 0,
        per_class_test=SYNTH["per_class_test"] if SYNTH else 0,
        seed=SYNTH["seed"] if SYNTH else 0,
    log:
        f"{R}/logs/make_synthetic.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/make_synthetic.py"


rule download:
    input:
        unpack(download_inputs),
    output:
        tarball=f"{R}/data/cifar-10-python.tar.gz",
        provenance=f"{R}/data/download.json",
    params:
        url=SYNTH_TARBALL if SYNTH else config["data"]["url"],
        md5="" if SYNTH else config["data"]["md5"],
        retries=config["data"]["retries"],
        timeout_s=config["data"]["timeout_s"],
    log:
        f"{R}/logs/download.log",
    benchmark:
        f"{R}/benchmarks/download.tsv"
    threads: 1
    resources:
        mem_mb=300,
        runtime=30,
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/download.py"


rule preprocess:
    input:
        tarball=rules.download.output.tarball,
        provenance=rules.download.output.provenance,
    output:
        split_files("{split}"),
        stats=f"{R}/data/{{split}}/stats.json",
    params:
        n_val=lambda w: config["data"]["splits"][w.split]["n_val"],
        seed=lambda w: config["data"]["splits"][w.split]["seed"],
    log:
        f"{R}/logs/preprocess_{{split}}.log",
    benchmark:
        f"{R}/benchmarks/preprocess_{{split}}.tsv"
    threads: THREADS["data"]
    resources:
        mem_mb=1500,
        runtime=5,
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/preprocess.py"
