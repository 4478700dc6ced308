# Cluster galleries of Table 2's and Table 3's runs. A gallery draws the seed-0 run of a (dataset,
# method) from the predictions it saved beside its record: each cluster's size, most confident images,
# majority label and purity.

from cce.pipeline.gallery import GALLERY_EXPERIMENTS


rule gallery:
    input:
        record="results/runs/{experiment}/{dataset}/{method}/seed0.json",
        predictions="results/runs/{experiment}/{dataset}/{method}/seed0.predictions.npz",  # named by the record
        # the thumbnails' source: an image folder's feature file (its paths), else the prepared data
        images=lambda wc: (features_path(wc.dataset, config[wc.experiment]["extractor"]) if wc.dataset in IMAGE_FOLDERS
                           else manifest_path(wc.dataset)),
    output:
        report("results/figures/gallery/{experiment}/{dataset}/{method}.png", caption="../report/gallery.rst",
               category="Cluster galleries", subcategory="{experiment}: {dataset}",
               labels={"experiment": "{experiment}", "dataset": "{dataset}", "method": "{method}"}),
    wildcard_constraints:
        experiment="|".join(GALLERY_EXPERIMENTS),
    params:
        root=DATA_ROOT,
    log:
        "logs/gallery/{experiment}/{dataset}/{method}.log",
    threads: 1
    resources:
        mem_mb=stage_resources("clustering")["mem_mb"],
        runtime=stage_resources("clustering")["runtime"],
    conda:
        "../../environment.yml"
    shell:
        "python -m cce gallery --record {input.record} --root {params.root:q}"
        " --out {output} > {log} 2>&1"
