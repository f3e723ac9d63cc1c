# What ggplot2 costs before a single data point is drawn (benchmarks/drawing_floor.py).
#
#   Rscript benchmarks/drawing_floor.R R_DIR PLOTS_JSON SAMPLES REPS OUT_JSON
#
# For each kind of figure in PLOTS_JSON (statistic, layout, series), up to SAMPLES of its figures
# (spread over the page) are drawn REPS times each, one core, as r/report.R draws them:
#   full      the figure itself, drawn by partybal_draw (its device, size and dpi);
#   skeleton  the same ggplot with every layer's geom replaced by geom_blank: the same data train
#             the same scales, so the panels, axes, strips, legend and caption are the figure's own,
#             but no point, line or band is drawn.
# CPU seconds (user + system) of this process; the median over the reps. Writes one JSON object:
# {"kinds": [{kind, figures, sampled, panels, skeleton_panels, full, skeleton}]} — figures: how
# many of that kind the page has; panels, skeleton_panels: the median panel count of the sampled
# figures and of their skeletons (the same, or the skeleton is not the figure's); blank: every
# sampled skeleton has as many layers as its figure, all of them geom_blank.

args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 5) stop("usage: drawing_floor.R R_DIR PLOTS_JSON SAMPLES REPS OUT_JSON")
r_dir <- args[1]
source(file.path(r_dir, "plots.R"))
source(file.path(r_dir, "report.R"))
samples <- as.integer(args[3])
reps <- as.integer(args[4])

spec <- jsonlite::fromJSON(args[2], simplifyVector = TRUE, simplifyDataFrame = FALSE)
figures <- lapply(spec$figures, partybal_figure_spec, dirname(args[2]))
kind_of <- function(f) paste(f$statistic, if (is.null(f$layout)) "" else f$layout, if (isTRUE(f$series)) "series" else "one window")
kinds <- vapply(figures, kind_of, "")

cpu <- function(expr) {
  t <- proc.time()
  force(expr)
  d <- proc.time() - t
  d[["user.self"]] + d[["sys.self"]]
}

skeleton <- function(p) {
  p$layers <- lapply(p$layers, function(l) {
    data <- if (inherits(l$data, "waiver")) NULL else l$data
    ggplot2::geom_blank(data = data, mapping = l$mapping, stat = l$stat, position = l$position, inherit.aes = l$inherit.aes)
  })
  p
}

# Both variants go through partybal_draw (r/plots.R: its device, size and dpi), which builds the
# figure with the global partybal_plot: swapped for the skeleton while the skeleton is timed.
figure_plot <- partybal_plot
skeleton_plot <- function(fig) skeleton(figure_plot(fig))
draw_with <- function(plot_fn, fig, file) {
  partybal_plot <<- plot_fn
  on.exit(partybal_plot <<- figure_plot)
  err <- partybal_draw(fig, file)
  if (!is.null(err)) stop("figure ", fig$number, " could not be drawn: ", err)
}

partybal_warm_up()
file <- tempfile(fileext = ".png")
out <- list()
for (k in unique(kinds)) {
  members <- which(kinds == k)
  pick <- unique(members[round(seq(1, length(members), length.out = min(samples, length(members))))])
  full <- skel <- panels <- skel_panels <- numeric()
  blank <- TRUE
  for (i in pick) {
    fig <- figures[[i]]
    p <- figure_plot(fig)
    s <- skeleton(p)
    panels <- c(panels, nrow(ggplot2::ggplot_build(p)$layout$layout))
    skel_panels <- c(skel_panels, nrow(ggplot2::ggplot_build(s)$layout$layout))
    blank <- blank && length(s$layers) == length(p$layers) &&
      all(vapply(s$layers, function(l) inherits(l$geom, "GeomBlank"), TRUE))
    f_times <- s_times <- numeric()
    for (r in seq_len(reps)) {
      f_times <- c(f_times, cpu(draw_with(figure_plot, fig, file)))
      s_times <- c(s_times, cpu(draw_with(skeleton_plot, fig, file)))
    }
    full <- c(full, stats::median(f_times))
    skel <- c(skel, stats::median(s_times))
  }
  out[[length(out) + 1]] <- list(
    kind = k, figures = length(members), sampled = length(pick),
    panels = stats::median(panels), skeleton_panels = stats::median(skel_panels), blank = blank, full = stats::median(full), skeleton = stats::median(skel)
  )
}
unlink(file)
jsonlite::write_json(list(kinds = out), args[5], auto_unbox = TRUE, digits = NA)
