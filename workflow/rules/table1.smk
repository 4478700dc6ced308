# Table 1: EM against projected gradient descent on one batch of predictions (both readings of lam).
# Timings are machine-dependent: the record says which device and how many threads measured them.


rule solvers:
    output:
        table=report("results/table1.csv", caption="../report/table1.rst", category="Tables"),
        summary="results/table1_speedup.csv",
        trajectories="results/table1_trajectories.json",
    params:
        options=json.dumps(config["solvers"], sort_keys=True),
    log:
        "logs/solvers/table1.log",
    threads: stage_resources("solvers")["threads"]
    resources:
        mem_mb=stage_resources("solvers")["mem_mb"],
        runtime=stage_resources("solvers")["runtime"],
        gpu=stage_resources("solvers")["gpu"],
    conda:
        "../../environment.yml"
    shell:
        "python -m cce solvers --options {params.options:q} --out {output.table}"
        " --summary-out {output.summary} --trajectories-out {output.trajectories} > {log} 2>&1"
