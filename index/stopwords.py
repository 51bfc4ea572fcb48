"""English stopwords removed by the analyzer.

A short list of function words: removing them shrinks the postings of the terms that carry no
meaning, while keeping negations such as "no" and "not" out of the list, because claims in
scientific and product text often turn on them.
"""

from __future__ import annotations

__all__ = ["ENGLISH"]

ENGLISH: frozenset[str] = frozenset(
    """
    a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its
    itself just me more most my myself nor of off on once only or other our ours ourselves out
    over own same she should so some such than that the their theirs them themselves then there
    these they this those through to too under until up very was we were what when where which
    while who whom why will with would you your yours yourself yourselves
    """.split()  # noqa: SIM905
)
