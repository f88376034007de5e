# A user's own model (a models entry with `module: path/to/file.py::Class`): the network gates
# on its code, on the search split's images. Its searches and finals take this verdict and its
# module file as inputs (gate_evidence, user_module), so editing the file reruns exactly its
# gate and its runs. It runs after the study's own gates, whose code (nn/) trains it too: an
# edit there reruns them, then this gate, so its recorded code hash is always the current one.


rule gate_user_model:
    input:
        split_files("search"),
        stats=split_stats("search"),
        code=code_of("gate_user_model"),
        module=lambda w: user_module(w.model),
        gates=GATE_EVIDENCE,
    output:
        json=f"{R}/gates/user/{{model}}.json",
    log:
        f"{R}/logs/gates/user/{{model}}.log",
    priority: 20
    conda:
        "../../envs/model.yaml"
    threads: THREADS["gates"]
    resources:
        mem_mb=800,
        runtime=5,
    params:
        target=lambda w: config["models"][w.model]["module"],
        n_images=20,  # rows of the search split to check on and memorise
        seed=config["gates"]["gradcheck"]["seed"],
    script:
        "../scripts/gate_user_model.py"
