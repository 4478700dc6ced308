# Table 1: EM against projected gradient descent on one batch of predictions (both readings of lam).
# Timings are machine-dependent: the record says which device and how many threads measured them.


rule table1:
    output:
        table=report("results/table1.csv", caption="../report/table1.rst", category="Tables"),
        summary="results/table1_speedup.csv",
        trajectories="results/table1_trajectories.json",
    params:
        options=json.dumps(config["table1"], sort_keys=True),
    log:
        "logs/tables/table1.log",
    threads: stage_resources("table1")["threads"]
    resources:
        mem_mb=stage_resources("table1")["mem_mb"],
        runtime=stage_resources("table1")["runtime"],
        gpu=stage_resources("table1")["gpu"],
    conda:
        "../../environment.yml"
    shell:
        "python -m cce table1 --options {params.options:q} --out {output.table}"
        " --summary-out {output.summary} --trajectories-out {output.trajectories} > {log} 2>&1"
