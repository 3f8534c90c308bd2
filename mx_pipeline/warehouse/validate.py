"""Split a frame into the rows pandera accepts and the rows it rejects, each with its reasons."""

from dataclasses import dataclass

import pandas as pd
import pandera.errors as pa_errors
import pandera.pandas as pa


@dataclass(frozen=True)
class Rejected:
    """A row pandera refused, with every rule it broke."""

    row: dict
    reason: str
    label: int  # its label in the frame judged


def split_valid(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> tuple[pd.DataFrame, list[Rejected]]:
    """(valid rows, rejected rows). A failure not tied to a row (a wrong column type) rejects every row."""
    try:
        return schema.validate(frame, lazy=True), []
    except pa_errors.SchemaErrors as errors:
        cases = errors.failure_cases
    reasons: dict[int, list[str]] = {}
    frame_wide: list[str] = []
    for case in cases.itertuples(index=False):
        message = f"{case.column}: {case.check} (got {str(case.failure_case)[:60]!r})"
        if pd.isna(case.index):
            frame_wide.append(message)
        else:
            reasons.setdefault(int(case.index), []).append(message)
    if frame_wide:
        reasons = {label: frame_wide + reasons.get(label, []) for label in frame.index}
    good = frame.drop(index=sorted(reasons))
    rejected = [Rejected(frame.loc[label].to_dict(), "; ".join(reasons[label]), label) for label in sorted(reasons)]
    return good, rejected
