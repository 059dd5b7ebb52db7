"""Per-model report hooks: what a model adds to the report every run gets.

Every report (``evaluation/run.py``) holds, for any kind of model: how the run was made (settings,
epochs and steps, training time summed over sessions, hardware, seed, a link to ``config.yaml``),
the training curves from ``metrics.csv``, and the comparison with the published and measured
figures the model declares in ``evaluation/figures.yaml`` (every registered model has an entry
there; a test checks it). The test pass, and with it the "Test metrics" table, runs only when the
model overrides ``test_step`` and the data module ``test_dataloader``; a generator or an embedding
model without them gets the same report minus that table.

To add the model's own tables and figures, write ``evaluation/models/<NAME>.py``, ``NAME`` being
the model's registry name (``configs/model/<NAME>.yaml``), defining::

    def extend_report(report: Report, ctx: EvalContext) -> None:
        report.add_table(title, header, rows, note="...")    # sections appear in the order added
        report.add_figure(file_stem, matplotlib_figure, title, caption="...")
        report.add_note("...")
        ctx.results["my/score"] = value                       # compared with figures.yaml's "my/score"
        ctx.result_sizes["my/score"] = cases                  # for shares: cases behind the 95 % interval

The hook is called once, in a single-process, single-device evaluation (no DDP), after the test pass
and the training curves and before the figures comparison (so ``ctx.results`` reach it). ``ctx``
(:class:`evaluation.context.EvalContext`) holds:

- ``model``: the trained LightningModule with the checkpoint's weights; ``datamodule``, set up
  for testing when it has a test split; ``trainer``, the evaluation Trainer;
- ``metrics``: what ``trainer.test`` returned, ``test_size`` the test cases behind them;
  both empty/None without a test pass: check ``ctx.has_test_pass`` before reading state only the
  test pass fills (a confusion matrix);
- ``run_dir``, ``ckpt_path``, ``model_name``, ``data_name``.

Run the model over data with :func:`evaluation.classification.predict_scores` (``trainer.predict``
on the model's device) or with the model's own methods under ``torch.no_grad()``. Sections to
reuse, each requiring only what it names, never a model's name:

- :func:`evaluation.classification.add_classification_sections`: ``forward`` returns class scores
  and the test pass fills a ``test_confusion`` ``MulticlassConfusionMatrix``; per-class accuracy,
  confusion matrix, the most confidently misclassified test images;
- :func:`evaluation.overlap.add_overlap_section`: class scores from ``forward``;
- :func:`evaluation.reconstructions.add_reconstruction_section`: ``reconstruct(x, labels)`` and a ``decoder``;
- :func:`evaluation.routing_ablation.add_routing_ablation`: a settable ``routing_iterations``;
- :func:`evaluation.image_grid.image_grid`: any batch of images (generated samples, neighbours).

A model without a hook file gets the generic report.
"""
