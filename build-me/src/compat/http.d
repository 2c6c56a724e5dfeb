build-me/src/compat/http.o: src/compat/http.c src/core/banned.h \
 src/compat/http.h src/core/strbuf.h src/core/util.h \
 /usr/share/include/llhttp/llhttp.h
src/core/banned.h:
src/compat/http.h:
src/core/strbuf.h:
src/core/util.h:
/usr/share/include/llhttp/llhttp.h:
