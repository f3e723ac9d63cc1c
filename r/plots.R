# partybal plots: one function per Jetstream statistic, named plot_<statistic>.
#
# The renderer finds the statistics it can plot by the names of these functions (a statistic
# without one is shown as a table). Each function takes
#   d    a data.frame with columns branch, comparison ("absolute", "relative_uplift",
#        "difference"), window (integer), parameter (numeric or NA), point, lower, upper
#   spec a list: statistic, metric_label, reference (branch name), branches (ordered),
#        series (TRUE when the period has several windows), windows (integer vector: the windows
#        drawn), layout ("intervals", "dodged", "small-multiples", "lines"), width/height (inches),
#        legend_rows, caption — the layout fields computed by partybal/report.py figure_layout
# and returns a ggplot object. Nothing here evaluates or parses data: names are plain strings.

suppressPackageStartupMessages({
  library(ggplot2)
})

# The reference branch is always dark grey; the others take these in order (10 branches, each
# distinguishable from the others and from grey). Past that, colours repeat and the layouts that
# need them (lines per branch) carry the name in a legend that wraps onto as many rows as needed.
reference_colour <- "#4D4D4D"
partybal_palette <- c(
  "#0060DF", "#E66100", "#2AA876", "#9059FF", "#D7264C", "#00A3B4", "#8A6E00", "#E03AA5", "#6E3B00"
)

# The reference branch's name, or "" when the renderer could not tell (JSON null).
ref_of <- function(spec) {
  r <- spec$reference
  if (is.null(r) || length(r) != 1 || is.na(r)) "" else as.character(r)
}

branch_colours <- function(spec) {
  branches <- unlist(spec$branches)
  ref <- ref_of(spec)
  others <- setdiff(branches, ref)
  values <- c(rep_len(partybal_palette, length(others)))
  names(values) <- others
  if (ref %in% branches) values <- c(stats::setNames(reference_colour, ref), values)
  values[branches]
}

branch_labels <- function(spec) {
  branches <- unlist(spec$branches)
  ifelse(branches == ref_of(spec), paste0(branches, " (reference)"), branches)
}

legend_rows <- function(spec) {
  n <- spec$legend_rows
  if (is.null(n) || n < 1) 1L else as.integer(n)
}

branch_scale <- function(spec, aesthetic = c("colour", "fill")) {
  branches <- unlist(spec$branches)
  scale_colour_manual(
    values = branch_colours(spec), breaks = branches, labels = branch_labels(spec),
    aesthetics = aesthetic, name = NULL, guide = guide_legend(nrow = legend_rows(spec), byrow = TRUE)
  )
}

# The reference drawn thicker than the other branches in line plots.
reference_width <- function(spec) {
  scale_linewidth_manual(values = c(`TRUE` = 1.1, `FALSE` = 0.55), guide = "none")
}

theme_partybal <- function() {
  theme_minimal(base_size = 11) +
    theme(
      legend.position = "bottom",
      legend.margin = margin(0, 0, 0, 0),
      panel.grid.minor = element_blank(),
      strip.text = element_text(face = "bold", hjust = 0),
      plot.title.position = "plot",
      plot.caption = element_text(colour = "grey35", hjust = 0),
      plot.caption.position = "plot"
    )
}

caption_of <- function(spec, extra = NULL) {
  text <- c(extra, if (!is.null(spec$caption) && nzchar(spec$caption)) spec$caption)
  if (length(text)) paste(text, collapse = "\n") else NULL
}

panel_labels <- function(spec) {
  ref <- ref_of(spec)
  vs <- if (nzchar(ref)) paste0(" vs ", ref) else ""
  c(
    absolute = "Value",
    relative_uplift = paste0("Relative uplift", vs, " (%)"),
    difference = paste0("Difference", vs)
  )
}

# Relative uplifts arrive as fractions (0.05); they are drawn in percent (5), their panel says so.
with_panels <- function(d, spec, keep = c("absolute", "relative_uplift")) {
  d <- d[d$comparison %in% keep, , drop = FALSE]
  up <- d$comparison == "relative_uplift"
  for (k in c("point", "lower", "upper")) d[[k]][up] <- 100 * d[[k]][up]
  labels <- panel_labels(spec)
  d$panel <- factor(labels[d$comparison], levels = labels[keep])
  d
}

# A dashed zero line in the relative-uplift panels only, and only when there are uplift rows:
# never a panel of its own (an "NA" facet).
zero_line <- function(d, spec, orientation = c("h", "v"), extra = list()) {
  if (!any(d$comparison == "relative_uplift")) return(NULL)
  labels <- panel_labels(spec)
  z <- data.frame(panel = factor(labels[["relative_uplift"]], levels = levels(d$panel)), at = 0)
  for (k in names(extra)) z[[k]] <- extra[[k]]
  if (match.arg(orientation) == "h") {
    geom_hline(data = z, aes(yintercept = at), colour = "grey50", linetype = "dashed")
  } else {
    geom_vline(data = z, aes(xintercept = at), colour = "grey50", linetype = "dashed")
  }
}

# Window axis labels thinned to what fits a panel `panel_in` inches wide: a step of 1, 2, 5, 7
# (a week of daily windows), 14, 28, ... so that labels never collide.
window_breaks <- function(windows, panel_in) {
  windows <- sort(unique(as.integer(windows)))
  fit <- max(2, floor(panel_in / 0.4))
  if (length(windows) <= fit) return(windows)
  steps <- c(2, 5, 7, 14, 28, 56, 91, 182, 364)
  step <- steps[which(steps >= length(windows) / fit)[1]]
  if (is.na(step)) step <- ceiling(length(windows) / fit)
  windows[windows %% step == 0 | windows == min(windows)]
}

# Strip labels wrapped to `width` characters; a word longer than that (a long branch name) is cut
# into pieces, so a label never runs off its panel.
wrap_label <- function(x, width) {
  vapply(as.character(x), function(s) {
    words <- strsplit(s, " ", fixed = TRUE)[[1]]
    pieces <- unlist(lapply(words, function(w) {
      n <- nchar(w)
      if (n <= width) w else substring(w, seq(1, n, by = width), pmin(seq(width, n + width - 1, by = width), n))
    }))
    paste(strwrap(paste(pieces, collapse = " "), width = width), collapse = "\n")
  }, "", USE.NAMES = FALSE)
}

fig_width <- function(spec) {
  w <- spec$width
  if (is.null(w) || w <= 0) 8.5 else w
}

# mean, binomial, mean_lm, per_client_dau_impact, population_ratio: a point estimate with a CI
# per branch. One window: an interval per branch. A short series with few branches: intervals per
# branch and window, side by side. A long series or many branches: one row of small multiples per
# branch (value, uplift), line + ribbon, the reference as a grey line + band behind each value.
plot_mean <- function(d, spec) {
  layout <- if (is.null(spec$layout) || !nzchar(spec$layout)) {
    if (isTRUE(spec$series)) "small-multiples" else "intervals"
  } else spec$layout
  switch(layout,
    "segments-dodged" = series_by_segment(d, spec, dodged = TRUE),
    "segments-small-multiples" = series_by_segment(d, spec, dodged = FALSE),
    "small-multiples" = plot_series_small_multiples(d, spec),
    "dodged" = plot_series_dodged(d, spec),
    plot_intervals(d, spec)
  )
}

plot_intervals <- function(d, spec) {
  d <- with_panels(d, spec)
  d$branch <- factor(d$branch, levels = rev(unlist(spec$branches)))
  ggplot(d, aes(y = branch, x = point, xmin = lower, xmax = upper, colour = branch)) +
    zero_line(d, spec, "v") +
    geom_pointrange(na.rm = TRUE) +
    facet_wrap(~panel, scales = "free_x", nrow = 1) +
    branch_scale(spec) +
    guides(colour = "none") +
    labs(x = NULL, y = NULL, caption = caption_of(spec)) +
    theme_partybal()
}

plot_series_dodged <- function(d, spec) {
  d <- with_panels(d, spec)
  panels <- max(1, length(unique(d$panel)))
  ggplot(d, aes(x = window, y = point, ymin = lower, ymax = upper, colour = branch)) +
    zero_line(d, spec, "h") +
    geom_pointrange(position = position_dodge(width = 0.6), size = 0.25, na.rm = TRUE) +
    facet_wrap(~panel, scales = "free_y", nrow = 1) +
    scale_x_continuous(breaks = window_breaks(spec$windows, (fig_width(spec) - 0.8) / panels)) +
    branch_scale(spec) +
    labs(x = "Window", y = NULL, caption = caption_of(spec)) +
    theme_partybal()
}

plot_series_small_multiples <- function(d, spec) {
  ref <- ref_of(spec)
  branches <- unlist(spec$branches)
  others <- setdiff(branches, ref)
  if (!length(others)) others <- branches
  d <- with_panels(d, spec)
  labels <- panel_labels(spec)
  chars <- max(20, floor((fig_width(spec) - 1) / 2 / 0.075))
  one_line <- function(branch, panel) wrap_label(paste0(branch, " \u00b7 ", panel), chars)
  own <- d[d$branch %in% others, , drop = FALSE]
  own$facet <- one_line(own$branch, own$panel)
  order <- as.vector(t(outer(others, levels(d$panel), one_line)))
  present <- order[order %in% own$facet]
  # facets in branch order, each branch's value then uplift; absent combinations never drawn
  own$facet <- factor(own$facet, levels = present)
  back <- d[d$branch == ref & d$comparison == "absolute" & ref %in% branches, , drop = FALSE]
  back <- do.call(rbind, c(list(back[0, , drop = FALSE]), lapply(others, function(b) {
    if (!nrow(back) || !(one_line(b, labels[["absolute"]]) %in% present)) return(NULL)
    x <- back
    x$facet <- one_line(b, labels[["absolute"]])
    x
  })))
  if (is.null(back$facet)) back$facet <- character(0)
  back$facet <- factor(back$facet, levels = present)
  uplift_facets <- unique(own$facet[own$comparison == "relative_uplift"])
  zeros <- data.frame(facet = factor(as.character(uplift_facets), levels = present), at = rep(0, length(uplift_facets)))
  many <- length(unique(own$window)) > 30
  p <- ggplot(own, aes(x = window, y = point)) +
    geom_ribbon(data = back, aes(ymin = lower, ymax = upper), fill = reference_colour, alpha = 0.12, na.rm = TRUE) +
    geom_line(data = back, colour = reference_colour, linewidth = 0.6, linetype = "22", na.rm = TRUE) +
    geom_hline(data = zeros, aes(yintercept = at), colour = "grey50", linetype = "dashed") +
    geom_ribbon(aes(ymin = lower, ymax = upper, fill = branch), alpha = 0.22, na.rm = TRUE) +
    geom_line(aes(colour = branch), linewidth = 0.7, na.rm = TRUE)
  if (!many) p <- p + geom_point(aes(colour = branch), size = 0.7, na.rm = TRUE)
  extra <- if (nrow(back)) paste0("Dashed grey line and band in each Value panel: ", ref, " (the reference branch).")
  p +
    facet_wrap(~facet, ncol = 2, scales = "free_y") +
    scale_x_continuous(breaks = window_breaks(spec$windows, (fig_width(spec) - 1) / 2)) +
    branch_scale(spec) +
    guides(colour = "none", fill = "none") +
    labs(x = "Window", y = NULL, caption = caption_of(spec, extra)) +
    theme_partybal()
}
# A series for every segment of a basis, one column per segment (spec$segments, in order), drawn
# once for all the segment views. Rows: the values of every branch, then the relative uplift. A
# short series (dodged): one uplift row, the compared branches side by side in each window. A long
# series: one uplift row per compared branch (line + band), and in the value row the reference as
# a dashed grey line and band with the other branches as lines. The y scale is shared along a row,
# so segments compare at a glance.
series_by_segment <- function(d, spec, dodged) {
  ref <- ref_of(spec)
  branches <- unlist(spec$branches)
  others <- setdiff(branches, ref)
  if (!length(others)) others <- branches
  segments <- unlist(spec$segments)
  n_seg <- max(1, length(segments))
  d <- with_panels(d, spec)
  labels <- panel_labels(spec)
  d$segment <- factor(d$segment, levels = segments, labels = wrap_label(segments, max(12, floor((fig_width(spec) - 1) / n_seg / 0.075))))
  uplift <- labels[["relative_uplift"]]
  if (dodged) {
    d$row <- factor(as.character(d$panel), levels = levels(d$panel))
  } else {
    chars <- max(20, floor(1.1 / 0.075))
    rows <- c(labels[["absolute"]], paste0(others, ": ", uplift))
    d$row <- ifelse(d$comparison == "absolute", labels[["absolute"]], paste0(d$branch, ": ", uplift))
    d$row <- factor(d$row, levels = rows[rows %in% d$row])
  }
  zero_rows <- unique(d$row[d$comparison == "relative_uplift"])
  zeros <- data.frame(row = factor(as.character(zero_rows), levels = levels(d$row)), at = rep(0, length(zero_rows)))
  panel_in <- (fig_width(spec) - 1.2) / n_seg
  p <- ggplot(d, aes(x = window, y = point, ymin = lower, ymax = upper, colour = branch)) +
    geom_hline(data = zeros, aes(yintercept = at), colour = "grey50", linetype = "dashed")
  extra <- NULL
  if (dodged) {
    p <- p + geom_pointrange(position = position_dodge(width = 0.7), size = 0.15, linewidth = 0.4, na.rm = TRUE)
  } else {
    back <- d[d$branch == ref & d$comparison == "absolute", , drop = FALSE]
    own <- d[!(d$branch == ref & d$comparison == "absolute"), , drop = FALSE]
    band <- own[own$comparison != "absolute", , drop = FALSE]
    p <- p +
      geom_ribbon(data = back, aes(ymin = lower, ymax = upper), fill = reference_colour, colour = NA, alpha = 0.12, na.rm = TRUE) +
      geom_line(data = back, colour = reference_colour, linewidth = 0.6, linetype = "22", na.rm = TRUE) +
      geom_ribbon(data = band, aes(ymin = lower, ymax = upper, fill = branch), colour = NA, alpha = 0.22, na.rm = TRUE) +
      geom_line(data = own, linewidth = 0.55, na.rm = TRUE)
    if (nrow(back)) extra <- paste0("Dashed grey line and band in the Value row: ", ref, " (the reference branch); the other branches' value intervals are in the figure's data.")
  }
  p +
    facet_grid(row ~ segment, scales = "free_y", labeller = labeller(row = function(x) wrap_label(x, 18))) +
    scale_x_continuous(breaks = window_breaks(spec$windows, panel_in)) +
    branch_scale(spec) +
    guides(fill = "none") +
    labs(x = "Window", y = NULL, caption = caption_of(spec, extra)) +
    theme_partybal() +
    theme(strip.text.y = element_text(face = "bold", angle = 0, hjust = 0), panel.spacing.x = grid::unit(0.8, "lines"))
}

plot_binomial <- plot_mean
plot_mean_lm <- plot_mean
plot_per_client_dau_impact <- plot_mean
plot_population_ratio <- plot_mean

# deciles: the value at each decile per branch, and the uplift at each decile.
plot_deciles <- function(d, spec) {
  d <- with_panels(d, spec)
  d$is_reference <- d$branch == ref_of(spec)
  d$window_label <- paste("Window", d$window)
  # many branches: fainter bands, so that overlapping ones do not turn into one blur
  alpha <- if (length(unlist(spec$branches)) > 4) 0.05 else 0.12
  p <- ggplot(d, aes(x = parameter, y = point, colour = branch, fill = branch)) +
    geom_ribbon(aes(ymin = lower, ymax = upper), alpha = alpha, colour = NA, na.rm = TRUE) +
    geom_line(aes(linewidth = is_reference), na.rm = TRUE) +
    geom_point(size = 0.9, na.rm = TRUE) +
    # segments side by side: narrower panels, fewer labels
    scale_x_continuous(breaks = if (length(unlist(spec$segments)) > 2) c(0.1, 0.5, 0.9) else seq(0.1, 0.9, by = 0.2)) +
    branch_scale(spec) +
    reference_width(spec) +
    labs(x = "Decile", y = NULL, caption = caption_of(spec)) +
    theme_partybal()
  segments <- unlist(spec$segments)
  if (length(segments)) {
    # the segments of a basis side by side: a column each; a row per window's values and uplift
    d$segment <- factor(d$segment, levels = segments)
    d$row <- if (isTRUE(spec$series)) paste0(d$window_label, " \u00b7 ", d$panel) else as.character(d$panel)
    windows <- sort(unique(d$window))
    levels <- if (isTRUE(spec$series)) as.vector(t(outer(paste("Window", windows), levels(d$panel), function(w, p) paste0(w, " \u00b7 ", p)))) else levels(d$panel)
    d$row <- factor(d$row, levels = levels[levels %in% d$row])
    z <- unique(d[d$comparison == "relative_uplift", "row", drop = FALSE])
    p <- p %+% d + facet_grid(row ~ segment, scales = "free_y", labeller = labeller(row = function(x) wrap_label(x, 18))) +
      theme(strip.text.y = element_text(face = "bold", angle = 0, hjust = 0), panel.spacing.x = grid::unit(0.8, "lines"))
    if (nrow(z)) p <- p + geom_hline(data = transform(z, at = 0), aes(yintercept = at), colour = "grey50", linetype = "dashed")
    return(p)
  }
  if (isTRUE(spec$series)) {
    d$facet <- paste0(d$window_label, " \u00b7 ", d$panel)
    windows <- sort(unique(d$window))
    levels <- as.vector(t(outer(paste("Window", windows), levels(d$panel), function(w, p) paste0(w, " \u00b7 ", p))))
    d$facet <- factor(d$facet, levels = levels[levels %in% d$facet])
    z <- d[d$comparison == "relative_uplift", c("facet"), drop = FALSE]
    z <- unique(z)
    p <- p %+% d + facet_wrap(~facet, scales = "free_y", ncol = 2)
    if (nrow(z)) p <- p + geom_hline(data = transform(z, at = 0), aes(yintercept = at), colour = "grey50", linetype = "dashed")
    p
  } else {
    p + zero_line(d, spec, "h") + facet_wrap(~panel, scales = "free_y", nrow = 1)
  }
}

distribution_plot <- function(d, spec, geom, ylab) {
  d <- d[d$comparison == "absolute", , drop = FALSE]
  d$is_reference <- d$branch == ref_of(spec)
  p <- ggplot(d, aes(x = parameter, y = point, colour = branch, linewidth = is_reference)) +
    geom +
    branch_scale(spec) +
    reference_width(spec) +
    labs(x = spec$metric_label, y = ylab, caption = caption_of(spec)) +
    theme_partybal()
  segments <- unlist(spec$segments)
  if (length(segments)) {
    # the segments of a basis side by side: a column each, a row per window drawn
    d$segment <- factor(d$segment, levels = segments)
    windows <- sort(unique(d$window))
    d$window_label <- factor(paste("Window", d$window), levels = paste("Window", windows))
    facets <- if (isTRUE(spec$series)) facet_grid(window_label ~ segment) else facet_wrap(~segment, nrow = 1)
    return(p %+% d + facets + theme(strip.text.y = element_text(face = "bold", angle = 0, hjust = 0), panel.spacing.x = grid::unit(0.8, "lines")))
  }
  if (isTRUE(spec$series)) {
    windows <- sort(unique(d$window))
    d$window_label <- factor(paste("Window", d$window), levels = paste("Window", windows))
    p <- p %+% d + facet_wrap(~window_label, ncol = 4)
  }
  p
}

plot_kernel_density_estimate <- function(d, spec) {
  distribution_plot(d, spec, geom_line(na.rm = TRUE), "Density")
}

plot_empirical_cdf <- function(d, spec) {
  distribution_plot(d, spec, geom_step(na.rm = TRUE), "Cumulative share of clients")
}

# --- machinery ----------------------------------------------------------------------------------

figure_height <- function(spec) {
  n_windows <- length(unlist(spec$windows))
  base <- if (isTRUE(spec$series)) 3.2 else 0.9 + 0.45 * length(unlist(spec$branches))
  if (isTRUE(spec$series) && spec$statistic %in% c("deciles")) {
    base <- 1.0 + 1.6 * n_windows
  }
  if (isTRUE(spec$series) && spec$statistic %in% c("kernel_density_estimate", "empirical_cdf")) {
    base <- 1.0 + 2.0 * ceiling(n_windows / 4)
  }
  max(base, 2.2)
}

# JSON nulls arrive as NULL list items or NA; both become NA_real_.
num <- function(x) {
  if (is.list(x)) x <- vapply(x, function(v) if (is.null(v)) NA_real_ else as.numeric(v), 0)
  as.numeric(x)
}

# The figure's rows as a data frame (plot functions take this).
partybal_figure_data <- function(fig) {
  rows <- fig$rows
  data.frame(
    branch = as.character(unlist(rows$branch)),
    comparison = as.character(unlist(rows$comparison)),
    window = as.integer(num(rows$window)),
    parameter = num(rows$parameter),
    point = num(rows$point),
    lower = num(rows$lower),
    upper = num(rows$upper),
    segment = if (is.null(rows$segment)) rep("", length(unlist(rows$branch))) else as.character(unlist(rows$segment)),
    stringsAsFactors = FALSE
  )
}

# The ggplot for one figure (an error if the statistic has no plot function).
partybal_plot <- function(fig) {
  plotter <- get0(paste0("plot_", fig$statistic), mode = "function")
  if (is.null(plotter)) stop("no plot function for statistic ", fig$statistic)
  plotter(partybal_figure_data(fig), fig)
}

# Draw one figure into `file`, at the size the renderer computed from its content
# (partybal/report.py figure_layout). Returns NULL on success or the error message.
partybal_draw <- function(fig, file, width = 8.5, dpi = 100) {
  if (is.null(get0(paste0("plot_", fig$statistic), mode = "function"))) {
    return(paste("no plot function for statistic", fig$statistic))
  }
  result <- tryCatch(
    {
      p <- partybal_plot(fig)
      height <- if (!is.null(fig$height) && fig$height > 0) fig$height else figure_height(fig)
      if (!is.null(fig$width) && fig$width > 0) width <- fig$width
      if (requireNamespace("ragg", quietly = TRUE)) {
        ragg::agg_png(file, width = width, height = height, units = "in", res = dpi)
      } else {
        grDevices::png(file, width = width, height = height, units = "in", res = dpi)
      }
      tryCatch(print(p), finally = grDevices::dev.off())
      NULL
    },
    error = function(e) conditionMessage(e)
  )
  result
}
