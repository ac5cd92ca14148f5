"""Every measurement of τ outside the loop's own E-step, in one place (the loop measures a round's held-out τ
live in `loop.held_out_tau` and journals it):

  tables.py      the paper's knowledge table: rows × passages → student jobs → means with bootstrap intervals,
                 paired gains, the rendered table and its JSON. Every table below is built with it.
  paper.py       `seal eval`: the table's rows written by our teacher (untrained, a run's trained adapter, or an
                 external model), optionally graded by an LLM judge.
  edit_files.py  `seal eval-edits`: the table for self-edits already written (SEAL-format files).
  held_out.py    a run's held-out τ per round, re-graded from its journal in every metric, with intervals.
"""
