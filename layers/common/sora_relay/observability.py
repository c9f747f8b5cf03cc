"""The one Logger and Metrics of the service, imported everywhere.

There is no Powertools Tracer: the X-Ray SDK it needs pulls botocore into the layer (about 10 MB
zipped) and costs about 0.2 s of import at every cold start (docs/performance.md). Functions keep
`Tracing: Active`, so X-Ray still records each invocation and its init phase.
"""

import warnings

from aws_lambda_powertools import Logger, Metrics

logger = Logger()
metrics = Metrics()

# Most reads publish no metric of their own, and `log_metrics` warns of that on stderr at an
# instance's first such call (formatting the warning reads the source line from disk). Powertools'
# metrics docs ("Raising SchemaValidationError on empty metrics") suppress it this way.
warnings.filterwarnings("ignore", "No application metrics to publish*")
