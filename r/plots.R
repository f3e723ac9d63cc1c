# partybal plots: one function per Jetstream statistic, named plot_<statistic>.
#
# The renderer finds the statistics it can plot by the names of these functions (a statistic
# without one is shown as a table). Each function takes
#   d    a data.frame with columns branch, comparison ("absolute", "relative_uplift",
#        "difference"), window (integer), parameter (numeric or NA), point, lower, upper
#   spec a list: statistic, metric_label, reference (branch name), branches (ordered),
#        series (TRUE when the period has several windows), windows (integer vector)
# and returns a ggplot object. Nothing here evaluates or parses data: names are plain strings.

suppressPackageStartupMessages({
  library(ggplot2)
})

partybal_palette <- c(
  "#4D4D4D", "#0060DF", "#E66100", "#2AA876", "#9059FF", "#D7264C", "#00A3B4", "#8A6E00"
)

branch_scale <- function(spec, aesthetic = c("colour", "fill")) {
  branches <- unlist(spec$branches)
  values <- rep_len(partybal_palette, length(branches))
  names(values) <- branches
  scale_colour_manual(values = values, breaks = branches, aesthetics = aesthetic, name = "Branch")
}

theme_partybal <- function() {
  theme_minimal(base_size = 11) +
    theme(
      legend.position = "bottom",
      panel.grid.minor = element_blank(),
      strip.text = element_text(face = "bold", hjust = 0),
      plot.title.position = "plot"
    )
}

panel_labels <- function(spec) {
  c(
    absolute = "Value",
    relative_uplift = paste0("Relative uplift vs ", spec$reference),
    difference = paste0("Difference vs ", spec$reference)
  )
}

with_panels <- function(d, spec, keep = c("absolute", "relative_uplift")) {
  d <- d[d$comparison %in% keep, , drop = FALSE]
  labels <- panel_labels(spec)
  d$panel <- factor(labels[d$comparison], levels = labels[keep])
  d
}

# mean, binomial, mean_lm, per_client_dau_impact, population_ratio: a point estimate with a CI
# per branch; one interval per branch for a single window, one per branch and window for a series.
plot_mean <- function(d, spec) {
  d <- with_panels(d, spec)
  if (isTRUE(spec$series)) {
    # Windows are discrete: an interval per branch and window, side by side.
    ggplot(d, aes(x = window, y = point, ymin = lower, ymax = upper, colour = branch)) +
      geom_hline(
        data = d[d$comparison == "relative_uplift", , drop = FALSE][1, , drop = FALSE],
        aes(yintercept = 0), colour = "grey50", linetype = "dashed", na.rm = TRUE
      ) +
      geom_pointrange(position = position_dodge(width = 0.5), size = 0.25, na.rm = TRUE) +
      facet_wrap(~panel, scales = "free_y", nrow = 1) +
      scale_x_continuous(breaks = unlist(spec$windows)) +
      branch_scale(spec) +
      labs(x = "Window", y = NULL) +
      theme_partybal()
  } else {
    d$branch <- factor(d$branch, levels = rev(unlist(spec$branches)))
    ggplot(d, aes(y = branch, x = point, xmin = lower, xmax = upper, colour = branch)) +
      geom_vline(
        data = d[d$comparison == "relative_uplift", , drop = FALSE][1, , drop = FALSE],
        aes(xintercept = 0), colour = "grey50", linetype = "dashed", na.rm = TRUE
      ) +
      geom_pointrange(na.rm = TRUE) +
      facet_wrap(~panel, scales = "free_x", nrow = 1) +
      branch_scale(spec) +
      guides(colour = "none") +
      labs(x = NULL, y = NULL) +
      theme_partybal()
  }
}
plot_binomial <- plot_mean
plot_mean_lm <- plot_mean
plot_per_client_dau_impact <- plot_mean
plot_population_ratio <- plot_mean

# deciles: the value at each decile per branch, and the uplift at each decile.
plot_deciles <- function(d, spec) {
  d <- with_panels(d, spec)
  p <- ggplot(d, aes(x = parameter, y = point, colour = branch, fill = branch)) +
    geom_ribbon(aes(ymin = lower, ymax = upper), alpha = 0.12, colour = NA, na.rm = TRUE) +
    geom_line(na.rm = TRUE) +
    geom_point(size = 0.9, na.rm = TRUE) +
    scale_x_continuous(breaks = seq(0.1, 0.9, by = 0.2)) +
    branch_scale(spec) +
    labs(x = "Decile", y = NULL) +
    theme_partybal()
  if (isTRUE(spec$series)) {
    d$window_label <- paste("Window", d$window)
    p %+% d + facet_wrap(~ window_label + panel, scales = "free_y", ncol = 2)
  } else {
    p + facet_wrap(~panel, scales = "free_y", nrow = 1)
  }
}

distribution_plot <- function(d, spec, geom, ylab) {
  d <- d[d$comparison == "absolute", , drop = FALSE]
  p <- ggplot(d, aes(x = parameter, y = point, colour = branch)) +
    geom +
    branch_scale(spec) +
    labs(x = spec$metric_label, y = ylab) +
    theme_partybal()
  if (isTRUE(spec$series)) {
    d$window_label <- paste("Window", d$window)
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

# Draw one figure into `file`. Returns NULL on success or the error message.
partybal_draw <- function(fig, file, width = 8.5, dpi = 100) {
  plotter <- get0(paste0("plot_", fig$statistic), mode = "function")
  if (is.null(plotter)) {
    return(paste("no plot function for statistic", fig$statistic))
  }
  rows <- fig$rows
  d <- data.frame(
    branch = as.character(unlist(rows$branch)),
    comparison = as.character(unlist(rows$comparison)),
    window = as.integer(num(rows$window)),
    parameter = num(rows$parameter),
    point = num(rows$point),
    lower = num(rows$lower),
    upper = num(rows$upper),
    stringsAsFactors = FALSE
  )
  result <- tryCatch(
    {
      p <- plotter(d, fig)
      height <- figure_height(fig)
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
