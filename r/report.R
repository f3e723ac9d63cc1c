# Helpers the knitted report calls. Data arrive as a JSON file written by the renderer; nothing
# from the data is ever evaluated: names are only strings in data frames and HTML-escaped text.

suppressPackageStartupMessages({
  library(jsonlite)
})

html_text <- function(x) {
  x <- htmltools::htmlEscape(as.character(x), attribute = TRUE)
  gsub("`", "&#96;", x, fixed = TRUE)
}

# Draw the figures the renderer asks for, `cores` at a time (forked workers), into out_dir.
# plots_json: {"figures": [figures to draw, each with its `file` (relative to out_dir, named by its
# content hash: partybal/page/figures.py), `height` and `spec` (its spec's file, relative to
# plots_json's folder) — or the spec itself], "reused": [{number, file, alt}: stored already, not
# drawn], "copies": [{number, file, alt, of}: the same figure as number `of` on this page]}.
# A worker reads a figure's spec when it draws it, so this process never holds every figure's rows
# (forked workers would each end up with a copy of the pages they were parsed into).
# Writes drawn.json next to plots_json: {"drawn": [numbers], "failed": [numbers]}.
# Returns a list: for each figure number, list(src = relative path) or list(error = message).
partybal_draw_all <- function(plots_json, out_dir, fig_dir, cores = 1L) {
  spec <- jsonlite::fromJSON(plots_json, simplifyVector = TRUE, simplifyDataFrame = FALSE)
  figures <- spec$figures
  dir.create(file.path(out_dir, fig_dir), recursive = TRUE, showWarnings = FALSE)
  draw <- function(head) {
    fig <- tryCatch(partybal_figure_spec(head, dirname(plots_json)), error = function(e) e)
    if (inherits(fig, "error")) return(list(error = conditionMessage(fig), alt = head$alt))
    rel <- if (is.null(fig$file)) file.path(fig_dir, sprintf("fig-%d.png", as.integer(fig$number))) else fig$file
    err <- partybal_draw(fig, file.path(out_dir, rel))
    if (is.null(err)) list(src = rel, alt = fig$alt) else list(error = err, alt = fig$alt)
  }
  cores <- max(1L, as.integer(cores))
  results <- if (cores > 1L && length(figures) > 1L) {
    partybal_warm_up()
    # One fork per core, each with a bin of figures balanced by their expected cost.
    bins <- balance(vapply(figures, figure_cost, 0), cores)
    drawn <- parallel::mclapply(bins, function(idx) lapply(figures[idx], draw), mc.cores = cores, mc.preschedule = FALSE)
    out <- vector("list", length(figures))
    for (b in seq_along(bins)) {
      part <- drawn[[b]]
      if (inherits(part, "try-error")) part <- rep(list(structure(as.character(part), class = "try-error")), length(bins[[b]]))
      out[bins[[b]]] <- part
    }
    out
  } else {
    lapply(figures, draw)
  }
  results <- lapply(results, function(r) {
    if (inherits(r, "try-error")) list(error = as.character(r), alt = "") else r
  })
  numbers <- vapply(figures, function(f) as.character(as.integer(f$number)), "")
  names(results) <- numbers
  failed <- vapply(results, function(r) !is.null(r$error), TRUE)
  jsonlite::write_json(
    list(drawn = as.integer(numbers[!failed]), failed = as.integer(numbers[failed])),
    file.path(dirname(plots_json), "drawn.json")
  )
  for (r in spec$reused) {
    results[[as.character(as.integer(r$number))]] <- list(src = r$file, alt = r$alt)
  }
  for (r in spec$copies) {
    of <- results[[as.character(as.integer(r$of))]]
    results[[as.character(as.integer(r$number))]] <- if (!is.null(of$error)) list(error = of$error, alt = r$alt) else list(src = r$file, alt = r$alt)
  }
  results
}

# One figure's spec: read from its file when plots.json lists it by `spec`, else the entry itself.
# A missing or unreadable file is an error naming the file relative to plots.json (never a temp path).
partybal_figure_spec <- function(head, base_dir) {
  if (is.null(head$spec)) return(head)
  path <- file.path(base_dir, head$spec)
  if (!file.exists(path)) stop("the figure's data (", head$spec, ") is missing", call. = FALSE)
  tryCatch(
    jsonlite::read_json(path, simplifyVector = TRUE, simplifyDataFrame = FALSE),
    error = function(e) stop("the figure's data (", head$spec, ") could not be read", call. = FALSE)
  )
}

# Relative drawing cost of a figure: a fixed part plus its panels, which its height (computed from
# its content by the renderer) follows; older specs without a height count panels from windows.
figure_cost <- function(fig) {
  if (!is.null(fig$height) && fig$height > 0) return(1 + fig$height / 3)
  if (is.null(fig$statistic)) return(1)
  windows <- if (isTRUE(fig$series)) length(unlist(fig$windows)) else 1
  panels <- if (fig$statistic %in% c("kernel_density_estimate", "empirical_cdf")) windows else 2 * windows
  1 + 0.15 * panels
}

# Longest processing time first: each figure to the least loaded of n bins.
balance <- function(costs, n) {
  load <- numeric(n)
  bins <- vector("list", n)
  for (i in order(costs, decreasing = TRUE)) {
    b <- which.min(load)
    bins[[b]] <- c(bins[[b]], i)
    load[b] <- load[b] + costs[i]
  }
  Filter(Negate(is.null), bins)
}

# The first ggplot of a session pays for lazy loading; pay it once, before forking.
partybal_warm_up <- function() {
  file <- tempfile(fileext = ".png")
  grDevices::png(file)
  print(ggplot2::ggplot(data.frame(x = 1, y = 1), ggplot2::aes(x, y)) + ggplot2::geom_point() +
    ggplot2::facet_wrap(~x))
  grDevices::dev.off()
  unlink(file)
}

# The HTML for figure `number`: its image, or why it could not be drawn.
partybal_figure_html <- function(figures, number) {
  r <- figures[[as.character(as.integer(number))]]
  if (is.null(r)) {
    '<p class="plot-error">Figure missing.</p>'
  } else if (!is.null(r$error)) {
    paste0('<p class="plot-error">This plot could not be drawn: ', html_text(r$error), "</p>")
  } else {
    paste0(
      '<img class="plot" loading="lazy" decoding="async" src="', html_text(r$src), '" alt="', html_text(r$alt), '">'
    )
  }
}

# Each figure's place in the knitted page (`<!--partybal-figure:N-->`, written by the template with
# a number we chose; data-derived text is HTML-escaped, so it never holds one) filled with the
# figure's HTML in one pass over the page (one knitr chunk per figure cost ≈ 5 ms each).
partybal_place_figures <- function(lines, figures) {
  pattern <- "<!--partybal-figure:([0-9]+)-->"
  at <- gregexpr(pattern, lines, perl = TRUE)
  found <- regmatches(lines, at)
  regmatches(lines, at) <- lapply(found, function(m) {
    vapply(sub(pattern, "\\1", m, perl = TRUE), function(n) partybal_figure_html(figures, n), "", USE.NAMES = FALSE)
  })
  lines
}
