# Cluster galleries of Table 2's and Table 3's runs, and features of image folders (datasets of kind
# image_folder). A gallery draws the seed-0 run of a (dataset, method) from the predictions it saved
# beside its record: each cluster's size, most confident images, majority label and purity.

from cce.data import image_folders
from cce.pipeline.gallery import GALLERY_EXPERIMENTS, gallery_targets

IMAGE_FOLDERS = image_folders(config["datasets"])
# The Snakefile's `rule all` lists all_targets() (common.smk); the galleries join it here, beside their rule.
_targets_before_galleries = all_targets
all_targets = lambda: _targets_before_galleries() + gallery_targets(config)  # noqa: E731


if IMAGE_FOLDERS:

    rule image_folder_features:
        output:
            "results/features/{dataset}/{extractor}.npz",
        params:
            folder=lambda wc: IMAGE_FOLDERS[wc.dataset],
            options=json.dumps(config["features"], sort_keys=True),
        log:
            "logs/features/{dataset}/{extractor}.log",
        wildcard_constraints:
            dataset="|".join(IMAGE_FOLDERS),
        threads: stage_resources("features")["threads"]
        resources:
            mem_mb=stage_resources("features")["mem_mb"],
            runtime=stage_resources("features")["runtime"],
            gpu=stage_resources("features")["gpu"],
        conda:
            "../../environment.yml"
        shell:
            "python -m cce image-features {params.folder:q} {wildcards.extractor} --name {wildcards.dataset}"
            " --require-labels --options {params.options:q} --out {output} > {log} 2>&1"

    ruleorder: image_folder_features > features


rule gallery:
    input:
        record="results/runs/{experiment}/{dataset}/{method}/seed0.json",
        predictions="results/runs/{experiment}/{dataset}/{method}/seed0.predictions.npz",
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
        "python -m cce gallery --record {input.record} --predictions {input.predictions} --root {params.root:q}"
        " --out {output} > {log} 2>&1"
