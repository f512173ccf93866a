#include <curl/curl.h>
#include <stdio.h>

int main(void) {
    CURL *c = curl_easy_init();
    if (c == NULL) {
        return 1;
    }
    printf("%s\n", curl_version());
    curl_easy_cleanup(c);
    return 0;
}
