build-me-asan/src/compat/http_stream.o: src/compat/http_stream.c \
 src/core/banned.h src/compat/http_stream.h src/compat/http.h \
 src/core/strbuf.h src/core/util.h /usr/share/include/llhttp/llhttp.h
src/core/banned.h:
src/compat/http_stream.h:
src/compat/http.h:
src/core/strbuf.h:
src/core/util.h:
/usr/share/include/llhttp/llhttp.h:
