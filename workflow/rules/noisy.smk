# Figure 2: robustness to label noise, H against H2 and GCE. The runs are network_run jobs (deep.smk).
# figure2_runs.csv names every run's record; the notebook (notebook_figure2) reads their per-epoch curves.


rule figure2_data:
    input:
        records("noisy"),
    output:
        summary="results/figure2.csv",
        runs="results/figure2_runs.csv",
    log:
        "logs/tables/figure2.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m cce summarize --runs {input} --by dataset loss eta --out {output.summary}"
        " --runs-out {output.runs} > {log} 2>&1"
