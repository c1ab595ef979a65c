"""The R the agent's R tools run (``list_variables``' R objects, ``r_describe``).

One R function call each, the object's name passed as a string argument, never pasted into
code: :func:`is_r_name` admits only a plain R name, which ``get`` can only look up. Each call
runs under R's ``setTimeLimit`` and returns a character vector (``"!error"`` first when R
failed, ``"!missing"`` when the name is not bound).
"""

from __future__ import annotations

import re
from typing import Any

from rsql_magic.context.rsession import import_robjects

__all__ = ["R_DESCRIBE", "R_LIST", "is_r_name", "r_function"]

# an R name as R reads one (letters, digits, '.', '_'; not starting with a digit, '_' or '.'
# and a digit), ASCII only; with the reserved words refused, it can only be looked up
_R_NAME = re.compile(r"(?:[A-Za-z]|\.(?![0-9]))[A-Za-z0-9._]{0,199}")
_R_RESERVED = frozenset(
    "if else repeat while function for next break in TRUE FALSE NULL Inf NaN NA NA_integer_ "
    "NA_real_ NA_character_ NA_complex_".split()
)


def is_r_name(name: str) -> bool:
    """Whether `name` is a plain R variable name (not a reserved word): what R's ``get`` can
    only look up, never evaluate."""
    return bool(_R_NAME.fullmatch(name)) and name not in _R_RESERVED


# lists globalenv's objects (class and size), at most `max_n` of them, after their count
R_LIST = r"""
function(max_n, time_limit) {
  setTimeLimit(elapsed = time_limit, transient = TRUE)
  on.exit(setTimeLimit(cpu = Inf, elapsed = Inf, transient = FALSE))
  tryCatch({
    nms <- ls(globalenv())
    out <- sprintf("%d", length(nms))
    for (n in utils::head(nms, max_n)) {
      x <- get(n, envir = globalenv(), inherits = FALSE); d <- dim(x)
      size <- if (!is.null(d)) paste(d, collapse = " x ") else paste("length", length(x))
      out <- c(out, sprintf("- %s: %s, %s", n, paste(class(x), collapse = "/"), size))
    }
    out
  }, error = function(e) c("!error", conditionMessage(e)))
}
"""

# str() shows first values (sample rows), summary() statistics: each only as the policy
# allows. Redacted columns (or list elements) are replaced before either reads them; an
# object whose own name, names or column names are redacted shows its structure only.
# summary() of a long object reads evenly spaced rows (no RNG: the user's seed stays).
R_DESCRIBE = r"""
function(name, time_limit, redact, show_values, show_stats, sample_n) {
  setTimeLimit(elapsed = time_limit, transient = TRUE)
  on.exit(setTimeLimit(cpu = Inf, elapsed = Inf, transient = FALSE))
  tryCatch({
    if (!exists(name, envir = globalenv(), inherits = FALSE)) return("!missing")
    x <- get(name, envir = globalenv(), inherits = FALSE)
    rx <- vapply(as.character(redact), function(p) utils::glob2rx(tolower(p)), "")
    is_red <- function(cn) {
      if (!length(rx) || is.null(cn) || is.na(cn)) return(FALSE)
      any(vapply(rx, function(r) tryCatch(grepl(r, tolower(cn)), error = function(e) TRUE),
                 TRUE))
    }
    d <- dim(x)
    size <- if (!is.null(d)) paste("dim", paste(d, collapse = " x ")) else paste("length", length(x))
    out <- sprintf("R object `%s`: class %s, type %s, %s", name, paste(class(x), collapse = "/"),
                   typeof(x), size)
    nm <- names(x)
    red <- function(v) length(v) > 0 && any(vapply(as.character(v), is_red, TRUE))
    if (is_red(name) || (!is.list(x) && (red(nm) || red(colnames(x))))) {
      return(c(out, "(values withheld by policy)"))
    }
    hit <- which(vapply(as.character(if (is.list(x)) nm), is_red, TRUE))
    for (j in hit) x[[j]] <- rep("[redacted]", length(x[[j]]))
    if (length(hit)) out <- c(out, paste("values withheld by policy:",
                                         paste(nm[hit], collapse = ", ")))
    if (show_values) {
      out <- c(out, "str():", utils::capture.output(utils::str(
        x, max.level = 1, list.len = 60, vec.len = 2, nchar.max = 60, give.attr = FALSE)))
    } else if (is.list(x)) {
      k <- utils::head(seq_along(x), 60)
      out <- c(out, "elements (values withheld by policy):",
               sprintf("- %s: %s", if (is.null(nm)) k else nm[k],
                       vapply(k, function(j) paste(class(x[[j]]), collapse = "/"), "")))
    }
    if (!show_stats) return(c(out, "(summary withheld by policy)"))
    n <- NROW(x)
    head <- "summary():"
    if (n > sample_n && (is.data.frame(x) || is.atomic(x))) {
      idx <- unique(round(seq(1, n, length.out = sample_n)))
      x <- if (is.data.frame(x)) x[idx, , drop = FALSE] else x[idx]
      head <- sprintf("summary() of %d evenly spaced of %d rows (estimates):", length(idx), n)
    }
    s <- tryCatch(utils::capture.output(print(suppressWarnings(summary(x)))),
                  error = function(e) {
                    if (grepl("time limit", conditionMessage(e))) stop(e)
                    paste("not available:", conditionMessage(e))
                  })
    c(out, head, s)
  }, error = function(e) c("!error", conditionMessage(e)))
}
"""

_R_FUNCS: dict[str, Any] = {}  # source -> the R function, made once (rpy2 parses the source)


def r_function(source: str) -> Any:
    """The R function `source` defines (:data:`R_LIST`, :data:`R_DESCRIBE`), made once per
    process. Call it only where an R session runs (``r_session_exists``)."""
    fn = _R_FUNCS.get(source)
    if fn is None:
        fn = _R_FUNCS[source] = import_robjects().r(source)
    return fn
