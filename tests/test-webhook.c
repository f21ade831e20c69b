/* placeholder: tests for webhook are being written */
int main(void) {
        return 77;
}
