# What a figure's pixels depend on in R, for partybal/page/figures.py (run once per process and
# per content of the R folder): Rscript r/figure_code.R R_DIR ENTRY_FILE
#
# Prints one JSON object: the R version, .libPaths(), and the top-level definitions of ENTRY_FILE
# (plots.R) and of every file it source()s from R_DIR — for each name, its code (deparsed: comments
# and layout do not count) and the names and strings it mentions. Any other top-level expression
# (library(), source(), ...) is in "preamble", which every figure depends on. Nothing is evaluated
# but parse().

args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 2) stop("usage: figure_code.R R_DIR ENTRY_FILE")
r_dir <- args[1]

definitions <- list()
preamble <- character()
files <- character()

strings_in <- function(e) {
  if (is.character(e)) return(e)
  if (is.call(e) || is.pairlist(e) || is.expression(e) || is.list(e)) {
    return(unlist(lapply(as.list(e), function(x) if (missing(x)) NULL else strings_in(x)), use.names = FALSE))
  }
  character()
}

code_of <- function(e) paste(deparse(e, width.cutoff = 500L), collapse = "\n")

read_r <- function(name) {
  if (name %in% files) return(invisible())
  files <<- c(files, name)
  exprs <- parse(file.path(r_dir, name), keep.source = FALSE)
  for (e in as.list(exprs)) {
    is_assign <- is.call(e) && length(e) == 3 && (identical(e[[1]], as.name("<-")) || identical(e[[1]], as.name("="))) && is.name(e[[2]])
    if (is_assign) {
      key <- as.character(e[[2]])
      rhs <- e[[3]]
      old <- definitions[[key]]
      definitions[[key]] <<- list(
        code = c(old$code, code_of(rhs)),
        refs = unique(c(old$refs, all.names(rhs), strings_in(rhs)))
      )
    } else {
      preamble <<- c(preamble, code_of(e))
      for (s in strings_in(e)) {
        if (grepl("\\.[Rr]$", s) && file.exists(file.path(r_dir, basename(s)))) read_r(basename(s))
      }
    }
  }
}

read_r(args[2])
cat(jsonlite::toJSON(
  list(
    r_version = R.version.string,
    lib_paths = .libPaths(),
    files = I(files),
    preamble = I(preamble),
    definitions = lapply(definitions, function(d) list(code = I(d$code), refs = I(d$refs)))
  ),
  auto_unbox = TRUE, null = "null"
))
