# Results tables: the paper's Tables 1-9 (our numbers beside the published ones, and the difference), and
# the small-scale Table 5 look-alike of the finetune grid (methods x data fractions, mean±std over seeds,
# gain over the pre-training-free row) for each fine-tuning dataset.


for number in range(1, 10):

    rule:
        name:
            f"table{number}"
        input:
            paper_table_evaluations(number),
        output:
            md=f"{RESULTS}/tables/table{number}.md",
            csv=report(
                f"{RESULTS}/tables/table{number}.csv",
                caption="../report/table.rst",
                category="Tables",
                labels={"table": f"Table {number}"},
            ),
        log:
            f"{RESULTS}/logs/tables/table{number}.log",
        benchmark:
            f"{RESULTS}/benchmarks/tables/table{number}.tsv"
        params:
            number=number,
            cells=paper_table_cells(number),
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        conda:
            "../envs/mutdet.yaml"
        script:
            "../workflow_scripts/paper_table.py"


rule table5_small:
    input:
        get_table5_small_evaluations,
    output:
        md=f"{RESULTS}/tables/table5_small_{{dataset}}.md",
        csv=report(
            f"{RESULTS}/tables/table5_small_{{dataset}}.csv",
            caption="../report/table5_small.rst",
            category="Tables",
            labels={"table": "small-scale Table 5: {dataset}"},
        ),
        seeds=f"{RESULTS}/tables/table5_small_{{dataset}}_seeds.csv",
    log:
        f"{RESULTS}/logs/tables/table5_small_{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/tables/table5_small_{{dataset}}.tsv"
    params:
        cells=get_table5_small_cells,
        note=config["finetune"]["table_note"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/mutdet.yaml"
    script:
        "../workflow_scripts/table5_small.py"
