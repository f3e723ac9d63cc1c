# Knit one report: Rscript r/render.R REPORT_RMD OUTPUT_HTML PLOTS_JSON FIG_DIR CORES
# Every argument is a path or a number chosen by the renderer; data reach R only through
# PLOTS_JSON. The output is an HTML fragment that the renderer wraps into the page.

args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 5) {
  stop("usage: render.R REPORT_RMD OUTPUT_HTML PLOTS_JSON FIG_DIR CORES")
}
script_arg <- grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE)
r_dir <- normalizePath(dirname(sub("^--file=", "", script_arg[1])))

suppressPackageStartupMessages({
  library(rmarkdown)
})

output <- normalizePath(args[2], mustWork = FALSE)
fragment <- rmarkdown::html_fragment(
  fig_caption = FALSE, mathjax = FALSE, section_divs = FALSE, self_contained = FALSE,
  md_extensions = "-tex_math_dollars-tex_math_single_backslash-raw_tex"
)
# rmarkdown's HTML post-processor rewrites every <img src> to a relative path (ours are relative
# already), restores htmlwidget chunks (none) and fixes highlighted `|>` (no code is shown). Its
# image pass rewrites the whole page once per image: 21 s for the real-size page's ~1,000 figures.
fragment$post_processor <- NULL
knit_env <- new.env(parent = globalenv())
rmarkdown::render(
  input = args[1],
  output_format = fragment,
  output_file = basename(output),
  output_dir = dirname(output),
  intermediates_dir = dirname(normalizePath(args[1])),
  params = list(
    r_dir = r_dir,
    plots = normalizePath(args[3]),
    out_dir = dirname(output),
    fig_dir = args[4],
    cores = as.integer(args[5])
  ),
  envir = knit_env,
  quiet = TRUE
)
# Put each figure in its place (the setup chunk drew them: knit_env$figures).
html <- readLines(output, encoding = "UTF-8", warn = FALSE)
writeLines(knit_env$partybal_place_figures(html, knit_env$figures), output, useBytes = TRUE)
# Versions for the render's manifest.json (partybal/page/exports.py), next to the fragment.
writeLines(
  jsonlite::toJSON(list(
    R = paste(R.version$major, R.version$minor, sep = "."),
    ggplot2 = as.character(utils::packageVersion("ggplot2")),
    rmarkdown = as.character(utils::packageVersion("rmarkdown"))
  ), auto_unbox = TRUE),
  file.path(dirname(output), "r-versions.json")
)
