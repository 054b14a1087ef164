"""`auto`: recstack's best judgement within a time budget — tune candidate models, then blend them.

What `fit` does, all on the training interactions it is given (a caller's test data is never seen):

0. Choose the validation protocol from the data (`validation="auto"`): with a timestamp on every
   interaction, each user's newest interactions of the training part are held out (what production asks:
   what will this user pick next?); without, a per-user random share. Every later step validates this way.
1. Screen the candidates by what each model declares (`search.screen`), never by its name: a model that
   `needs_timestamps` is dropped without them, one that `needs_item_features` without an items frame, one
   whose `memory_estimate` exceeds `memory_limit_mb`, and one another candidate `subsumes`.
2. Tune each remaining candidate with Optuna on a validation split (`tuning_ratio` kept for fitting),
   sharing `tuning_share` of the budget, starting from the model's defaults; tuned parameters are kept
   only if they also beat the defaults by `confirm_margin` on `confirm_folds` fresh splits. Candidates
   within `keep_within` of the best go on. Then every member but the best is re-tuned for what it adds to
   the best (`partner_share` of the budget).
3. On `folds` fresh validation splits (`validation_ratio` kept), fit the members on the fitting part, pool
   `pool_size` candidates per held-out user from their blend and describe each (user, item) pair
   (`recstack.models._rerank`). Blend weights (per-user standardised scores) are learned on all folds'
   pools by forward selection from the best member on NDCG@k: a member joins only if it lifts NDCG by
   `blend_min_gain` (relative); members left out are dropped (`blend`).
4. Optionally (`rerank=True`) train a LightGBM LambdaRank ranker on those pools and keep it only if it
   beats the blend by `rerank_margin` on validation users it was not trained on (`ranker`).
5. Refit the members on all training data.

Ratings, play counts and watch time arrive as weights from `recstack.processing.weighting`. Progress goes
to the log (INFO) and to `progress(stage, share_of_budget_used)` when that attribute is set.
"""

from recstack.models.auto.model import AutoRecommender
from recstack.models.auto.run import AutoConfig, ProgressCallback

__all__ = ["AutoConfig", "AutoRecommender", "ProgressCallback"]
