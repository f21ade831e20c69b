/* placeholder: tests for ratelimit are being written */
int main(void) {
        return 77;
}
