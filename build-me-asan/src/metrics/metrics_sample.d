build-me-asan/src/metrics/metrics_sample.o: src/metrics/metrics_sample.c \
 src/core/banned.h src/metrics/metrics_internal.h src/metrics/metrics.h \
 src/core/strbuf.h src/core/timeutil.h src/core/util.h \
 src/router/router_metrics.h src/supervisor/supervisor_metrics.h
src/core/banned.h:
src/metrics/metrics_internal.h:
src/metrics/metrics.h:
src/core/strbuf.h:
src/core/timeutil.h:
src/core/util.h:
src/router/router_metrics.h:
src/supervisor/supervisor_metrics.h:
