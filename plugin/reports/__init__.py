"""Reports rendered outside a request (HTML with server-rendered SVG charts): the replay before go-live.

Reports lean on ``plugin.service`` and never the other way round (README, Layout), so the
function that runs an analysis and writes its report, :func:`plugin.reports.analysis.run_analysis`,
lives here.
"""
