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
rmarkdown::render(
  input = args[1],
  output_format = rmarkdown::html_fragment(
    fig_caption = FALSE, mathjax = FALSE, section_divs = FALSE, self_contained = FALSE,
    md_extensions = "-tex_math_dollars-tex_math_single_backslash-raw_tex"
  ),
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
  envir = new.env(parent = globalenv()),
  quiet = TRUE
)
# Versions for the render's manifest.json (partybal/page/exports.py), next to the fragment.
writeLines(
  jsonlite::toJSON(list(
    R = paste(R.version$major, R.version$minor, sep = "."),
    ggplot2 = as.character(utils::packageVersion("ggplot2")),
    rmarkdown = as.character(utils::packageVersion("rmarkdown"))
  ), auto_unbox = TRUE),
  file.path(dirname(output), "r-versions.json")
)
